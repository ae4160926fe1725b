// placeholder, replaced by the daemon's entry point
int main() { return 0; }
