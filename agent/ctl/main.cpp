// placeholder, replaced by phonefarmctl
int main() { return 0; }
