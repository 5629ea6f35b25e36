#!/usr/bin/env bash
# The seed recipe colab_ssh replaces, as users paste it into a notebook cell:
#
#   !apt-get install -y openssh-server
#   !echo root:PW | chpasswd
#   !echo "PermitRootLogin yes" >> /etc/ssh/sshd_config
#   !echo "PasswordAuthentication yes" >> /etc/ssh/sshd_config
#   !/usr/sbin/sshd -D &
#
# run here as one process (`bash seed.sh`) so that the benchmark times it whole. Differences,
# none of which changes what it costs:
# - the account is a temporary user, and "user:password" comes on this script's stdin, as the
#   `echo ... |` pipe gives it to chpasswd (never in an argument list);
# - the two lines are appended to a copy of /etc/ssh/sshd_config ($SEED_SSHD_CONFIG), so the
#   machine's own file is never changed;
# - sshd gets a port on 127.0.0.1 and its own pid file on its command line, so it cannot clash
#   with a system sshd; /run/sshd, which sshd needs and only the service script creates, is made
#   as most copies of the recipe do (`mkdir -p /var/run/sshd`).
# The harness waits for sshd's banner and stops sshd (its pid is written to $SEED_SSHD_PID).
set -euo pipefail

apt-get install -y openssh-server </dev/null
chpasswd
echo "PermitRootLogin yes" >>"$SEED_SSHD_CONFIG"
echo "PasswordAuthentication yes" >>"$SEED_SSHD_CONFIG"
mkdir -p /run/sshd
/usr/sbin/sshd -D -f "$SEED_SSHD_CONFIG" -p "$SEED_PORT" \
  -o ListenAddress=127.0.0.1 -o PidFile="$SEED_SSHD_PIDFILE" </dev/null &
echo $! >"$SEED_SSHD_PID"
