#!/bin/sh
# A job of scripts/test-systemd that tries to take the agent's port: it loops
# on bind() of 127.0.0.1:8787 (SO_REUSEADDR and SO_REUSEPORT set, as an
# attacker would) while the check restarts the agent, and records every
# attempt in $RESULT: `attempts N refused M` and a `bound` line if it ever
# got the port (it then listens on it, as a job stealing tokens would). It
# ends when $STOP exists, or after 300 s.
RESULT=/var/lib/phonefarm-agent/work/bind-result
STOP=/var/lib/phonefarm-agent/work/bind-stop
exec perl -MSocket -e '
  my ($result, $stop) = @ARGV;
  my ($attempts, $refused, @held) = (0, 0);
  my $until = time + 300;
  while (!-e $stop && time < $until) {
    socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
    setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1);
    setsockopt($s, SOL_SOCKET, SO_REUSEPORT, 1);
    $attempts++;
    if (bind($s, pack_sockaddr_in(8787, inet_aton("127.0.0.1"))) && listen($s, 16)) {
      push @held, $s;
      open(my $f, ">>", $result) or die; print $f "bound\n"; close $f;
    } else {
      $refused++;
    }
    if ($attempts % 50 == 1) {
      open(my $f, ">", "$result.count.tmp") or die; print $f "attempts $attempts refused $refused\n"; close $f;
      rename("$result.count.tmp", "$result.count");
    }
    select(undef, undef, undef, 0.002);
  }
  open(my $f, ">", "$result.count") or die; print $f "attempts $attempts refused $refused\n"; close $f;
' "$RESULT" "$STOP"
