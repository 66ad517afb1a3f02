# Sourced by the interop scripts (node is there already).
# A free port below the ephemeral range: one from listen(0) could be taken
# by a parallel test's outgoing connection before the agent binds it.
free_port() {
    node -e '
const net = require("net"), fs = require("fs");
let lo = 32768;
try {
  lo = Number(fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").split(/\s+/)[0]) || lo;
} catch {}
const attempt = (left) => {
  const p = 10000 + Math.floor(Math.random() * Math.max(lo - 10000, 1));
  const s = net.createServer();
  s.once("error", () => (left > 0 ? attempt(left - 1) : process.exit(1)));
  s.listen(p, "127.0.0.1", () => { console.log(p); s.close(); });
};
attempt(64);'
}
