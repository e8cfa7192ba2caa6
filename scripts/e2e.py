#!/usr/bin/python3
"""The seed scenarios end to end (issue 6): real MariaDB servers behind
linkgate, in network namespaces this script creates and removes.

Topology (one namespace per box, one veth pair per line):

    client  10.1.1.10   --cc|hc-- +-----------------+ --hw|wb-- westus  192.168.10.11 mariadbd
    sehost  10.1.2.10   --sc|hs-- |    NIC host     | --he|eb-- eastus  192.168.20.11 mariadbd
    onprem  192.0.2.10  --oc|ho-- | linkgated + XDP |
    azure   192.0.2.200 --ac|ha-- +-----------------+

hc and hs carry client-vnet's traffic (subnets clients 10.1.1.0/24 and sql-se
10.1.2.0/24, the latter with the Microsoft.Sql service endpoint); ho, ha, hw,
he are bound to no VNet (the Internet and backend side). westus-db's public
endpoint is 198.51.100.10, eastus-db's 203.0.113.10: nobody holds those
addresses, linkgate answers ARP for them and translates them to the
backends.

Every check runs the real `mysql` client with a query, asks
`linkgatectl explain` about the same 5-tuple, and compares the drop counters
of `linkgatectl stats` before and after. Exit 0 when every step went as
expected, 1 on any mismatch, 2 when the environment could not be set up.

Dataplanes: `xdp` (default: linkgated attaches its XDP program to the NIC
host's veths) and `dpdk` (linkgated without XDP, linkgate-dpdk on the same
veths through net_af_packet vdevs).
"""

import argparse
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

# ----------------------------------------------------------------------------
# The topology and the policy objects.

VNET = "client-vnet"
VNET_PREFIX = "10.1.0.0/16"

# short name, outer interface, its address, NIC-host interface, NIC-host
# address, VNet binding of the NIC-host interface ("" = none), role.
LINKS = [
    ("client", "cc", "10.1.1.10/24", "hc", "10.1.1.1/24", VNET, "client host in subnet clients"),
    ("sehost", "sc", "10.1.2.10/24", "hs", "10.1.2.1/24", VNET, "host in subnet sql-se (Microsoft.Sql service endpoint)"),
    ("onprem", "oc", "192.0.2.10/25", "ho", "192.0.2.1/25", "", "on-premises host, outside the VNet and outside AzureCloud"),
    ("azure", "ac", "192.0.2.200/25", "ha", "192.0.2.129/25", "", "another customer's Azure VM (inside AzureCloud)"),
    ("westus", "wb", "192.168.10.11/24", "hw", "192.168.10.1/24", "", "backend node of westus-db (mariadbd)"),
    ("eastus", "eb", "192.168.20.11/24", "he", "192.168.20.1/24", "", "backend node of eastus-db (mariadbd)"),
]


def addr(host):
    for name, _, a, *_ in LINKS:
        if name == host:
            return a.split("/")[0]
    raise KeyError(host)


SERVERS = {
    # name: (public endpoint, backend namespace, what its table says)
    "westus-db": ("198.51.100.10", "westus", "West US"),
    "eastus-db": ("203.0.113.10", "eastus", "East US"),
}
PE_IP = "10.1.1.100"

SERVICE_TAGS = {
    "changeNumber": 1,
    "cloud": "Public",
    "values": [
        {"name": "AzureCloud", "id": "AzureCloud",
         "properties": {"changeNumber": 1, "region": "", "platform": "Azure", "systemService": "",
                        "addressPrefixes": ["198.51.100.0/24", "203.0.113.0/24", "192.0.2.128/25"]}},
        {"name": "Sql", "id": "Sql",
         "properties": {"changeNumber": 1, "region": "", "platform": "Azure", "systemService": "AzureSQL",
                        "addressPrefixes": ["198.51.100.0/28", "203.0.113.0/28"]}},
        {"name": "Sql.WestUS", "id": "Sql.WestUS",
         "properties": {"changeNumber": 1, "region": "westus", "platform": "Azure", "systemService": "AzureSQL",
                        "addressPrefixes": ["198.51.100.0/28"]}},
        {"name": "Sql.EastUS", "id": "Sql.EastUS",
         "properties": {"changeNumber": 1, "region": "eastus", "platform": "Azure", "systemService": "AzureSQL",
                        "addressPrefixes": ["203.0.113.0/28"]}},
    ],
}

DB_USER, DB_PASS = "app", "app-pass"
QUERY = "SELECT name FROM demo.region"
CONNECT_TIMEOUT = 2  # seconds, mysql --connect-timeout


class Failure(Exception):
    """The environment could not be set up (exit 2)."""


class Interrupted(BaseException):
    """A signal: unwinds to the cleanup, never caught as a failure."""
    pass


# ----------------------------------------------------------------------------
# Output.

class Out:
    """The narration. With tap, every line is a TAP comment and each check
    is also one TAP result (meson's `protocol: 'tap'` counts them)."""

    def __init__(self, color, tap=False):
        self.color = color and not tap
        self.tap = tap
        self.tap_n = 0
        self.t0 = time.monotonic()

    def c(self, code, s):
        return f"\033[{code}m{s}\033[0m" if self.color else s

    def elapsed(self):
        return f"{time.monotonic() - self.t0:5.1f}s"

    def line(self, s=""):
        if self.tap:
            s = "\n".join("# " + l if l else "#" for l in (s.split("\n") if s else [""]))
        print(s, flush=True)

    def result(self, ok, name):
        if self.tap:
            self.tap_n += 1
            print(f"{'ok' if ok else 'not ok'} {self.tap_n} - {name}", flush=True)

    def plan(self):
        if self.tap:
            print(f"1..{self.tap_n}", flush=True)

    def bail(self, why):
        if self.tap:
            print("Bail out! " + why.replace("\n", " ")[:200], flush=True)

    def head(self, s):
        self.line()
        self.line(self.c("1", f"== {s}"))

    def step(self, s):
        self.line(f"{self.c('2', self.elapsed())}  {self.c('1;36', '*')} {s}")

    def cmd(self, s):
        for l in s.splitlines():
            self.line(f"         {self.c('2', ('' if l.startswith('$ ') else '$ ') + l)}")

    def info(self, s):
        for l in s.splitlines():
            self.line(f"         {l}")

    def ok(self, s):
        self.line(f"         {self.c('32', 'ok')}  {s}")

    def bad(self, s):
        self.line(f"         {self.c('1;31', 'MISMATCH')}  {s}")


OUT = Out(False)


def sh(cmd, timeout=30, check=True, input=None):
    """Run argv, capture output; Failure when check and it fails."""
    try:
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"timed out after {timeout}s: {' '.join(cmd)}")
    if check and r.returncode != 0:
        raise Failure(f"{' '.join(cmd)}: exit {r.returncode}: {(r.stderr or r.stdout).strip()}")
    return r


def wait_until(what, fn, deadline_s, interval=0.05):
    """Poll fn() until it returns a true value or the deadline passes."""
    end = time.monotonic() + deadline_s
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= end:
            raise Failure(f"{what}: not ready after {deadline_s}s")
        time.sleep(interval)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# ----------------------------------------------------------------------------
# Namespaces, veths and processes. Everything made here is recorded and
# removed by teardown(), also after a failure or a signal.

NS_PREFIX = "lge2e"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def remove_stale():
    """Namespaces, temp dirs and DPDK runtime dirs of earlier runs whose
    driver is gone (killed with SIGKILL before it could clean up)."""
    r = sh(["ip", "netns", "list"], check=False)
    for line in r.stdout.splitlines():
        m = re.match(rf"^({NS_PREFIX}(\d+)-\S+)", line)
        if m and not pid_alive(int(m.group(2))):
            kill_ns_pids(m.group(1))
            sh(["ip", "netns", "del", m.group(1)], check=False)
    tmp = tempfile.gettempdir()
    for d in os.listdir(tmp):
        m = re.match(rf"^{NS_PREFIX}-(\d+)-", d)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)
    # linkgate-dpdk's EAL runtime directory (--file-prefix lge2e<pid>).
    run_dpdk = "/var/run/dpdk"
    for d in os.listdir(run_dpdk) if os.path.isdir(run_dpdk) else []:
        m = re.match(rf"^{NS_PREFIX}(\d+)$", d)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(run_dpdk, d), ignore_errors=True)


def kill_ns_pids(ns):
    r = sh(["ip", "netns", "pids", ns], check=False)
    for p in r.stdout.split():
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


class Proc:
    """A long-running process we started (mariadbd, linkgated, ...)."""

    def __init__(self, name, argv, log_path):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def alive(self):
        return self.p.poll() is None

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace=10):
        if self.p.poll() is None:
            try:
                self.p.send_signal(signal.SIGTERM)
                self.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=5)
        self.log.close()


class Env:
    def __init__(self, tmp):
        self.tag = f"{NS_PREFIX}{os.getpid()}"
        self.tmp = tmp
        self.ns = {}  # short -> real
        self.procs = []
        self.sessions = []

    def real(self, short):
        return self.ns[short]

    def add_ns(self, short):
        real = f"{self.tag}-{short}"
        sh(["ip", "netns", "add", real])
        self.ns[short] = real
        sh(["ip", "-n", real, "link", "set", "dev", "lo", "up"])
        # IPv4 only: no router solicitations, MLD reports or DAD in the
        # counters (the veths are made after this and take the default).
        self.sysctl(short, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
        return real

    def sysctl(self, short, values):
        """Write /proc/sys inside the namespace (no procps needed)."""
        cmd = "; ".join(f"echo {v} > /proc/sys/{k.replace('.', '/')}" for k, v in values.items())
        self.run(short, ["sh", "-ec", cmd])

    def exec(self, short, argv):
        return ["ip", "netns", "exec", self.real(short)] + argv

    def run(self, short, argv, **kw):
        return sh(self.exec(short, argv), **kw)

    def veth(self, ns_a, if_a, ns_b, if_b):
        a, b = self.real(ns_a), self.real(ns_b)
        sh(["ip", "-n", a, "link", "add", "name", if_a, "type", "veth", "peer", "name", if_b, "netns", b])
        sh(["ip", "-n", a, "link", "set", "dev", if_a, "up"])
        sh(["ip", "-n", b, "link", "set", "dev", if_b, "up"])

    def settle_neigh(self, short, ip, deadline_s=10):
        """Wait until the neighbour entry of ip in namespace short is not
        being resolved (no entry, FAILED, or resolved)."""
        def idle():
            r = self.run(short, ["ip", "neigh", "show", "to", ip], check=False)
            return "INCOMPLETE" not in r.stdout
        wait_until(f"ARP resolution of {ip} in {short}", idle, deadline_s)

    def mac(self, short, ifname):
        return self.run(short, ["cat", f"/sys/class/net/{ifname}/address"]).stdout.strip()

    def start(self, name, argv):
        p = Proc(name, argv, os.path.join(self.tmp, name + ".log"))
        self.procs.append(p)
        return p

    def teardown(self):
        # Each step on its own: one that fails (a wait or an ip that times
        # out) must not leave the namespaces after it behind.
        def attempt(fn, *a):
            try:
                fn(*a)
            except Exception as e:
                print(f"teardown: {e}", file=sys.stderr)
        for s in self.sessions:
            attempt(s.close)
        for p in reversed(self.procs):
            attempt(p.stop)
        # Deleting a namespace takes its veths (and their peers) with it; the
        # NIC host's XDP links go with its bpffs mount (a mount namespace of
        # linkgated's own) and its veths.
        for real in reversed(list(self.ns.values())):
            attempt(kill_ns_pids, real)
            attempt(lambda r: sh(["ip", "netns", "del", r], check=False), real)
        self.ns.clear()
        # EAL's runtime directory of linkgate-dpdk (--file-prefix), if any.
        shutil.rmtree(f"/var/run/dpdk/{self.tag}", ignore_errors=True)


# ----------------------------------------------------------------------------
# MariaDB.

def mariadb_args(datadir, sockdir, bind):
    return ["--no-defaults", f"--datadir={datadir}", f"--socket={sockdir}/mysqld.sock",
            f"--pid-file={sockdir}/mysqld.pid", "--user=root", f"--bind-address={bind}", "--port=3306",
            "--skip-name-resolve", "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=4M",
            "--skip-log-bin", "--max-connections=50"]


def prepare_datadir(tmp):
    seed = os.path.join(tmp, "seed-datadir")
    r = sh(["mariadb-install-db", "--no-defaults", f"--datadir={seed}", "--user=root",
            "--auth-root-authentication-method=normal", "--skip-test-db",
            "--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M"], timeout=120, check=False)
    if r.returncode != 0:
        raise Failure("mariadb-install-db failed:\n" + (r.stdout + r.stderr)[-2000:])
    return seed


def start_mariadb(env, seed, short, region):
    d = os.path.join(env.tmp, short)
    os.makedirs(d)
    datadir = os.path.join(d, "data")
    shutil.copytree(seed, datadir, symlinks=True)
    init = os.path.join(d, "init.sql")
    with open(init, "w") as f:
        f.write("CREATE DATABASE IF NOT EXISTS demo;\n"
                "CREATE TABLE IF NOT EXISTS demo.region (name VARCHAR(40));\n"
                f"INSERT INTO demo.region VALUES ('{region}');\n"
                f"CREATE USER IF NOT EXISTS '{DB_USER}'@'%' IDENTIFIED BY '{DB_PASS}';\n"
                f"GRANT SELECT ON demo.* TO '{DB_USER}'@'%';\n")
    bind = addr(short)
    return env.start(f"mariadbd-{short}", env.exec(short, ["mariadbd"] + mariadb_args(datadir, d, bind) +
                                                   [f"--init-file={init}", f"--log-error={d}/error.log"]))


def mysql_argv(dst):
    return ["mysql", "--no-defaults", "-h", dst, "-P", "3306", "-u", DB_USER, f"-p{DB_PASS}",
            f"--connect-timeout={CONNECT_TIMEOUT}", "--batch", "--skip-column-names", "--skip-reconnect"]


def wait_mariadb(env, proc, short, region, deadline_s=40):
    def ready():
        if not proc.alive():
            raise Failure(f"{proc.name} exited:\n" + read_tail(os.path.join(env.tmp, short, "error.log")))
        r = env.run(short, mysql_argv(addr(short)) + ["-e", QUERY], check=False, timeout=10)
        return r.returncode == 0 and r.stdout.strip() == region
    wait_until(f"mariadbd in {short}", ready, deadline_s, interval=0.1)


def read_tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------
# The dataplanes on the NIC host.

class XdpPlane:
    name = "XDP"

    def __init__(self, args):
        self.args = args

    def check(self):
        for p in (self.args.linkgated, self.args.linkgatectl, self.args.pass_obj):
            if not os.path.exists(p):
                raise Failure(f"{p} is not built")

    def ready(self):
        # The agent answers only once its program is attached.
        return True

    def start(self, env, sock, state):
        pin = f"/sys/fs/bpf/{env.tag}"
        ifaces = []
        for _, _, _, nic_if, _, vnet, _ in LINKS:
            ifaces += ["--xdp-interface", f"{nic_if}={vnet}"]
        # `ip netns exec` gives linkgated a mount namespace of its own with a
        # fresh /sys: bpffs is mounted there, so the pins (and the XDP links
        # they hold) disappear with linkgated's namespace, and nothing is
        # left in the machine's /sys/fs/bpf.
        argv = [self.args.linkgated, "--state", state, "--socket", sock, "--pin-dir", pin] + ifaces + flow_log_args(env)
        script = "mount -t bpf bpf /sys/fs/bpf && exec \"$@\""
        self.describe = (f"linkgated --state {state} --socket {sock} --pin-dir {pin} " + " ".join(ifaces))
        return [env.start("linkgated", env.exec("nic", ["sh", "-c", script, "linkgated"] + argv))]


def flow_log_path(env):
    return os.path.join(env.tmp, "nsg-flows.jsonl")


def flow_log_args(env):
    """NSG flow logs every second (scenario 8 reads them)."""
    return ["--flow-log", flow_log_path(env), "--flow-log-interval", "1"]


class DpdkPlane:
    name = "DPDK"

    def __init__(self, args):
        self.args = args

    def check(self):
        if not self.args.linkgate_dpdk or not os.path.exists(self.args.linkgate_dpdk):
            print("linkgate-dpdk not built yet", file=sys.stderr)
            sys.exit(2)
        for p in (self.args.linkgated, self.args.linkgatectl, self.args.pass_obj):
            if not os.path.exists(p):
                raise Failure(f"{p} is not built")

    def start(self, env, sock, state):
        # linkgate-dpdk forwards; the kernel of the NIC host must not forward
        # the same frames a second time.
        env.sysctl("nic", {"net.ipv4.ip_forward": 0})
        agent = env.start("linkgated", env.exec("nic", [self.args.linkgated, "--state", state, "--socket", sock] +
                                                flow_log_args(env)))
        wait_until("linkgated socket", lambda: os.path.exists(sock) or not agent.alive(), 10)
        eal = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", env.tag]
        # A demo needs few flows; 1,000,000 (the default) wants ~400 MiB more.
        app = ["--socket", sock, "--flows", "65536"]
        for port, (short, outer, a, nic_if, nic_a, vnet, _) in enumerate(LINKS):
            eal += ["--vdev", f"net_af_packet{port},iface={nic_if}"]
            app += ["--port", f"{port}={vnet}" if vnet else str(port)]
            app += ["--route", f"{network_of(a)}={port},{env.mac(short, outer)}"]
        argv = [self.args.linkgate_dpdk] + eal + ["--"] + app
        self.describe = f"linkgated --state {state} --socket {sock}\n$ " + " ".join(argv)
        self.sock = sock
        return [agent, env.start("linkgate-dpdk", env.exec("nic", argv))]

    def ready(self):
        """linkgate-dpdk has registered with the agent (status lists it)."""
        st = rpc(self.sock, "status") or {}
        return any(d.get("kind") == "dpdk" for d in st.get("dataplanes", []) if isinstance(d, dict))


def rpc(sock_path, method, params=None, timeout=5):
    """One JSON-RPC request on the agent's socket; the result or None."""
    import socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(timeout)
            c.connect(sock_path)
            c.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}) +
                       "\n").encode())
            buf = b""
            while b"\n" not in buf:
                chunk = c.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf.split(b"\n")[0]).get("result")
    except (OSError, ValueError):
        return None


def network_of(cidr):
    ip, plen = cidr.split("/")
    n = int.from_bytes(bytes(int(x) for x in ip.split(".")), "big")
    plen = int(plen)
    mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
    n &= mask
    return ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0)) + f"/{plen}"


# ----------------------------------------------------------------------------
# linkgatectl.

class Ctl:
    def __init__(self, binary, sock):
        self.binary = binary
        self.sock = sock

    def raw(self, args, timeout=30):
        return sh([self.binary, "--socket", self.sock] + args, timeout=timeout, check=False)

    def __call__(self, *args, show=True, table=False):
        """A change or a query the reader should see: printed, must succeed."""
        args = list(args)
        if show:
            OUT.cmd("linkgatectl " + " ".join(quote(a) for a in args) + (" -o table" if table else ""))
        r = self.raw(args + (["-o", "table"] if table else []))
        if r.returncode != 0:
            raise Failure(f"linkgatectl {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        if table:
            return r.stdout
        return json.loads(r.stdout) if r.stdout.strip() else None

    def quiet(self, *args):
        return self(*args, show=False)


def quote(a):
    return a if re.match(r"^[\w./:=@,+-]+$", a) else "'" + a.replace("'", "'\\''") + "'"


# ----------------------------------------------------------------------------
# Attempts: the real mysql client, explain, and the counters.

class Expect:
    def __init__(self, ok=None, server=None, drop=None, no_answer=None):
        self.ok = ok          # the region the query must return
        self.server = server  # the server explain must name
        self.drop = drop      # the drop reason
        self.no_answer = no_answer  # fails without a linkgate drop (why)

    def text(self):
        if self.ok:
            return f"query -> '{self.ok}'"
        if self.drop:
            return f"fails: drop {self.drop}"
        return f"fails: {self.no_answer}"


class Attempt:
    def __init__(self, host, dst, expect, label):
        self.host, self.dst, self.expect, self.label = host, dst, expect, label
        self.rc = None
        self.out = ""
        self.err = ""
        self.explain = None
        self.seconds = 0.0

    def run(self, env):
        t = time.monotonic()
        r = env.run(self.host, mysql_argv(self.dst) + ["-e", QUERY], check=False, timeout=CONNECT_TIMEOUT + 15)
        self.seconds = time.monotonic() - t
        self.rc, self.out, self.err = r.returncode, r.stdout.strip(), r.stderr.strip()

    def got_text(self):
        if self.rc == 0:
            return f"query -> '{self.out}'"
        e = self.err.splitlines()[-1] if self.err else f"exit {self.rc}"
        m = re.match(r"^ERROR (\d+) \([^)]*\): Can't connect to server on '[^']*' \((\d+)\)", e)
        if m:
            e = f"can't connect: mysql ERROR {m.group(1)}, errno {m.group(2)}"
        return f"fails ({e})"


class Session:
    """One mysql client process kept open: queries go one at a time."""

    def __init__(self, env, host, dst):
        self.p = subprocess.Popen(env.exec(host, mysql_argv(dst) + ["--unbuffered"]), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        env.sessions.append(self)
        self.host, self.dst = host, dst

    def query(self, timeout, settled=None):
        """The first line of the answer, None when none came within timeout
        (the process is left waiting), or "" when the client ended. With
        settled, the wait also ends half a second after settled() holds."""
        try:
            self.p.stdin.write((QUERY + ";\n").encode())
            self.p.stdin.flush()
        except (BrokenPipeError, OSError):
            return ""
        end = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.p.stdout], [], [], min(left, 0.2) if settled else left)
            if not r:
                if settled and settled():
                    end = min(end, time.monotonic() + 0.5)
                    settled = None
                continue
            chunk = os.read(self.p.stdout.fileno(), 4096)
            if not chunk:
                return ""
            buf += chunk
        return buf.split(b"\n")[0].decode()

    def local_port(self, env):
        """The client's port of the session's TCP connection, or None."""
        r = env.run(self.host, ["ss", "-Htn", "state", "established", "dst", self.dst], check=False)
        for line in r.stdout.splitlines():
            m = re.search(r"\s(\S+):(\d+)\s+\S+:3306\s*$", line)
            if m:
                return int(m.group(2))
        return None

    def close(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=5)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            try:
                f.close()
            except OSError:
                pass


class Demo:
    def __init__(self, env, ctl):
        self.env, self.ctl = env, ctl
        self.rows = []  # (scenario, step, expected, got, ok)
        self.explains = [0, 0]  # agreed, total
        self.reasons_seen = {}
        self.scenario = ""
        self.conn_name = "?"  # the private endpoint connection (scenario 2)
        self.tags_file = ""

    def record(self, step, expected, got, ok):
        self.rows.append((self.scenario, step, expected, got, ok))
        (OUT.ok if ok else OUT.bad)(f"{step}: expected {expected}; got {got}")
        OUT.result(ok, f"scenario {self.scenario}: {step}" + ("" if ok else f": expected {expected}; got {got}"))

    def stats(self):
        return self.ctl.quiet("stats")

    def explain(self, src, dst):
        return self.ctl.quiet("explain", "--src", src, "--dst", dst, "--protocol", "Tcp", "--sport", "40000",
                              "--dport", "3306")

    def explain_text(self, e):
        if e is None:
            return "explain: (none)"
        if e.get("verdict") == "drop":
            s = f"explain: drop {e.get('reason')}"
            if e.get("rule") and str(e.get("reason", "")).startswith("nsg"):
                s += f" ({e.get('nsg')}/{e.get('rule')})"
            return s
        s = f"explain: {e.get('verdict')}"
        if e.get("server"):
            s += f" to {e.get('server')} via {e.get('backend')}"
        elif e.get("verdict") == "forward":
            s += " unchanged (no endpoint there: plain subnet traffic)"
        return s

    def tries(self, title, attempts):
        """Run the attempts one after another, each between two reads of the
        counters, then compare each with what was expected, with explain, and
        with its own counter deltas (run together, one attempt's drop could
        pass for another's)."""
        OUT.step(title)
        for a in attempts:
            OUT.info(f"try: {a.host} ({addr(a.host)}) -> {a.dst}:3306 {a.label}: mysql -e \"{QUERY}\"")
            before = self.stats()
            a.run(self.env)
            after = self.stats()
            delta = {k: after["drops"].get(k, 0) - before["drops"].get(k, 0) for k in after["drops"]}
            delta = {k: v for k, v in delta.items() if v}
            fwd = after.get("forwarded", 0) - before.get("forwarded", 0)
            OUT.info("     counters: " + (", ".join(f"{k} +{v}" for k, v in sorted(delta.items())) or "no drops") +
                     f"; forwarded +{fwd}")
            a.explain = self.explain(addr(a.host), a.dst)
            self.judge(a, delta, fwd)
        return attempts

    def judge(self, a, delta, fwd):
        """a against its expectation; explain against what happened."""
        x, e = a.expect, a.explain or {}
        problems = []
        if x.ok:
            if a.rc != 0 or a.out != x.ok:
                problems.append("the query did not return the expected row")
            if x.server and e.get("server") != x.server:
                problems.append(f"explain names server {e.get('server')}, expected {x.server}")
            if fwd <= 0:
                problems.append("no packet counted as forwarded")
        else:
            if a.rc == 0:
                problems.append("the query worked")
            if x.drop:
                if e.get("reason") != x.drop:
                    problems.append(f"explain says {e.get('verdict')} {e.get('reason')}, expected drop {x.drop}")
                if delta.get(x.drop, 0) <= 0:
                    problems.append(f"stats: no {x.drop} drop counted")
                else:
                    self.reasons_seen[x.drop] = self.reasons_seen.get(x.drop, 0) + 1
        # Scenario 7: does explain agree with what happened?
        if a.rc == 0:
            region_server = {v[2]: k for k, v in SERVERS.items()}.get(a.out)
            agree = e.get("verdict") == "forward" and e.get("server") == region_server
        elif e.get("verdict") == "drop":
            agree = delta.get(e.get("reason"), 0) > 0  # the reason it names was counted
        else:
            # Forwarded unchanged to an address that is no endpoint: linkgate
            # has nothing to translate, and nobody answered.
            agree = e.get("verdict") == "forward" and not e.get("server") and not e.get("privateEndpoint")
        self.explains[1] += 1
        self.explains[0] += agree
        if not agree:
            problems.append("explain disagrees with what happened")
        got = a.got_text() + "; " + self.explain_text(e)
        if x.drop and delta.get(x.drop, 0) > 0:
            got += f"; stats {x.drop} +{delta[x.drop]}"
        if problems:
            got += " [" + "; ".join(problems) + "]"
        self.record(f"{a.host} -> {a.dst} {a.label}".strip(), x.text(), got, not problems)


def attempt(host, dst, expect, label=""):
    return Attempt(host, dst, expect, label)


def ok_via(server):
    return Expect(ok=SERVERS[server][2], server=server)


def drop(reason):
    return Expect(drop=reason)


# ----------------------------------------------------------------------------
# The scenarios.

W, E = SERVERS["westus-db"][0], SERVERS["eastus-db"][0]


def scenario_1(d):
    OUT.head("Scenario 1: no rules, no endpoints: nothing connects")
    OUT.step("The client VNet, its two subnets and the two servers exist; no firewall rule, no VNet rule, "
             "no private endpoint")
    d.tries("Every host tries the public endpoints, the client also the future private endpoint address", [
        attempt("client", W, drop("firewall-no-match"), "(westus-db public)"),
        attempt("client", E, drop("firewall-no-match"), "(eastus-db public)"),
        attempt("onprem", W, drop("firewall-no-match"), "(westus-db public)"),
        attempt("azure", E, drop("firewall-no-match"), "(eastus-db public)"),
        attempt("sehost", W, drop("vnet-rule-no-match"), "(westus-db public)"),
        attempt("client", PE_IP, Expect(no_answer="nobody holds that address"),
                "(no endpoint yet)"),
    ])


def scenario_2(d):
    ctl = d.ctl
    OUT.head("Scenario 2: a manually requested private endpoint")
    # Scenario 1's attempt left the client's ARP resolution of the endpoint
    # address running (nobody answered). A SYN queued behind its last probe
    # would be dropped by the client's own kernel when that probe fails, so
    # wait for it to end before the address gets an endpoint.
    d.env.settle_neigh("client", PE_IP)
    OUT.step(f"Create private endpoint pe-east at {PE_IP} in subnet clients for eastus-db, as a manual request")
    pe = ctl("network", "private-endpoint", "create", "--name", "pe-east", "--vnet-name", VNET, "--subnet",
             "clients", "--private-ip-address", PE_IP, "--private-connection-resource-id", "eastus-db",
             "--group-id", "mysqlServer", "--manual-request", "--request-message", "app team, ticket 4711")
    conn = pe["manualPrivateLinkServiceConnections"][0]
    status = conn["privateLinkServiceConnectionState"]["status"]
    conns = ctl.quiet("mysql", "server", "private-endpoint-connection", "list", "--server-name", "eastus-db")
    d.conn_name = conn_name = conns[0]["name"] if conns else "?"
    OUT.info(f"connection {conn_name} is {status}")
    d.record("private endpoint created by manual request", "Pending", status, status == "Pending")
    d.tries("The client connects to the private endpoint while it is Pending", [
        attempt("client", PE_IP, drop("pec-pending"), "(pe-east, Pending)"),
    ])
    OUT.step("The server owner approves the connection, with a description")
    ctl("mysql", "server", "private-endpoint-connection", "approve", "--server-name", "eastus-db", "--name",
        conn_name, "--description", "Approved by the DBA")
    d.tries("The client connects through the private IP", [
        attempt("client", PE_IP, ok_via("eastus-db"), "(pe-east, Approved)"),
    ])
    OUT.step("The connection list, as az shows it")
    OUT.info(ctl("mysql", "server", "private-endpoint-connection", "list", "--server-name", "eastus-db",
                 table=True).rstrip())
    lst = ctl.quiet("mysql", "server", "private-endpoint-connection", "list", "--server-name", "eastus-db")
    st = lst[0]["privateLinkServiceConnectionState"] if lst else {}
    got = f"{st.get('status')}, '{st.get('description')}', actionsRequired {st.get('actionsRequired')}"
    d.record("private-endpoint-connection list", "Approved, 'Approved by the DBA', actionsRequired None", got,
             st.get("status") == "Approved" and st.get("description") == "Approved by the DBA" and
             st.get("actionsRequired") == "None" and
             lst[0].get("privateEndpoint", {}).get("id", "").endswith("/privateEndpoints/pe-east"))
    # The fields az prints for a connection (as captured in the az fixtures).
    with open(os.path.join(REPO, "tests/fixtures/az/pec_show.json")) as f:
        az = json.load(f)
    missing = sorted(k for k in az if not lst or k not in lst[0])
    d.record("connection fields as az prints them", "all of " + ", ".join(sorted(az)),
             "missing " + ", ".join(missing) if missing else "all present, type " + str(lst[0].get("type")),
             not missing and lst[0].get("type") == az["type"])


def scenario_3(d):
    ctl = d.ctl
    conn_name = d.conn_name
    OUT.head("Scenario 3: rejecting an approved connection cuts the open session")
    OUT.step(f"The client opens a mysql session to {PE_IP} and runs a query")
    s = Session(d.env, "client", PE_IP)
    first = s.query(timeout=10)
    d.record("open session, first query", "'East US'", repr(first), first == "East US")
    port = s.local_port(d.env)
    key = f"{addr('client')}:{port} > {PE_IP}:3306"

    def session_flow():
        return [f for f in ctl.quiet("flows") if f.get("original", "").endswith(key)]
    OUT.step(f"Its flow in the dataplane ({key})")
    OUT.info("\n".join(l for i, l in enumerate(ctl("flows", table=True).rstrip().splitlines())
                       if i < 2 or key in l))
    fl = session_flow()
    got = ", ".join(f"{f.get('state')} {f.get('kind')} {f.get('object')} -> {f.get('backend')}" for f in fl) or "none"
    d.record("flow of the open session", "established, to pe-east", got,
             len(fl) == 1 and fl[0].get("state") == "established" and fl[0].get("object") == "pe-east")
    OUT.step("The server owner rejects the connection")
    before = d.stats()
    ctl("mysql", "server", "private-endpoint-connection", "reject", "--server-name", "eastus-db", "--name",
        conn_name, "--description", "Use the replica")
    OUT.step("The open session runs its next query")
    second = s.query(timeout=3)
    after = d.stats()
    cut = after["drops"].get("pec-rejected", 0) - before["drops"].get("pec-rejected", 0)
    e = d.explain(addr("client"), PE_IP)
    got = ("no answer within 3 s" if second is None else f"answer {second!r}") + f"; stats pec-rejected +{cut}; " + \
        d.explain_text(e)
    okk = second is None and cut > 0 and e.get("reason") == "pec-rejected"
    d.explains[1] += 1
    d.explains[0] += e.get("reason") == "pec-rejected"
    if okk:
        d.reasons_seen["pec-rejected"] = d.reasons_seen.get("pec-rejected", 0) + 1
    d.record("open session, query after reject", "no answer: drop pec-rejected", got, okk)
    fl = session_flow()
    d.record("flow of the open session after reject", "removed",
             ", ".join(f.get("state", "?") for f in fl) or "removed", not fl)
    d.tries("A new connection while Rejected", [
        attempt("client", PE_IP, drop("pec-rejected"), "(pe-east, Rejected)"),
    ])
    OUT.step("Approve again")
    ctl("mysql", "server", "private-endpoint-connection", "approve", "--server-name", "eastus-db", "--name",
        conn_name, "--description", "Approved again")
    d.tries("A new connection after the approval", [
        attempt("client", PE_IP, ok_via("eastus-db"), "(pe-east, Approved again)"),
    ])
    OUT.step("The session cut by the rejection stays cut: its flow is gone, its retransmissions are not a SYN")
    # The query waits behind the unacknowledged one, sent again at the
    # session's TCP retransmission times (backing off to several seconds): wait
    # until one of them has been dropped (10 s deadline).
    before = d.stats()
    t = time.monotonic()
    third = s.query(timeout=10, settled=lambda: d.stats()["drops"].get("ct-invalid", 0) >
                    before["drops"].get("ct-invalid", 0))
    waited = time.monotonic() - t
    after = d.stats()
    inval = after["drops"].get("ct-invalid", 0) - before["drops"].get("ct-invalid", 0)
    got = (f"no answer in {waited:.1f} s" if third is None else f"answer {third!r}") + f"; stats ct-invalid +{inval}"
    okk = third is None and inval > 0
    if okk:
        d.reasons_seen["ct-invalid"] = d.reasons_seen.get("ct-invalid", 0) + 1
    d.record("old session after re-approval", "no answer: drop ct-invalid", got, okk)
    s.close()


def scenario_4(d):
    ctl = d.ctl
    OUT.head("Scenario 4: exfiltration: the client subnet may reach Sql.WestUS, not the rest of Sql")
    OUT.step("Load service tags (AzureCloud, Sql, Sql.WestUS, Sql.EastUS) and give the client subnet an NSG")
    ctl("network", "service-tag", "load", "--file", d.tags_file)
    ctl("network", "nsg", "create", "--name", "clients-nsg")
    ctl("network", "nsg", "rule", "create", "--nsg-name", "clients-nsg", "--name", "allow-sql-westus",
        "--priority", "100", "--direction", "Outbound", "--access", "Allow", "--protocol", "Tcp",
        "--destination-address-prefixes", "Sql.WestUS", "--destination-port-ranges", "3306")
    ctl("network", "nsg", "rule", "create", "--nsg-name", "clients-nsg", "--name", "deny-sql", "--priority", "200",
        "--direction", "Outbound", "--access", "Deny", "--protocol", "*", "--destination-address-prefixes", "Sql",
        "--destination-port-ranges", "*")
    ctl("network", "vnet", "subnet", "update", "--vnet-name", VNET, "--name", "clients",
        "--network-security-group", "clients-nsg")
    OUT.step("Both servers get a firewall rule for the client's address, so only the NSG can stop it")
    for srv in ("westus-db", "eastus-db"):
        ctl("mysql", "server", "firewall-rule", "create", "--server-name", srv, "--name", "client-vm",
            "--start-ip-address", addr("client"), "--end-ip-address", addr("client"))
    d.tries("The client tries both public endpoints and the private endpoint", [
        attempt("client", W, ok_via("westus-db"), "(westus-db public, Sql.WestUS)"),
        attempt("client", E, drop("nsg-deny"), "(eastus-db public, Sql)"),
        attempt("client", PE_IP, ok_via("eastus-db"), "(pe-east to eastus-db)"),
    ])
    OUT.step("What linkgate says about the refused one")
    OUT.info(ctl("explain", "--src", addr("client"), "--dst", E, "--protocol", "Tcp", "--dport", "3306",
                 table=True).rstrip())


def scenario_5(d):
    ctl = d.ctl
    OUT.head("Scenario 5: the public endpoint: firewall rules and publicNetworkAccess")
    OUT.step(f"A firewall rule on westus-db for the on-premises address {addr('onprem')}")
    ctl("mysql", "server", "firewall-rule", "create", "--server-name", "westus-db", "--name", "onprem-office",
        "--start-ip-address", addr("onprem"), "--end-ip-address", addr("onprem"))
    d.tries("The on-premises host connects", [
        attempt("onprem", W, ok_via("westus-db"), "(westus-db public, rule onprem-office)"),
    ])
    OUT.step("Delete the rule")
    ctl("mysql", "server", "firewall-rule", "delete", "--server-name", "westus-db", "--name", "onprem-office")
    d.tries("The on-premises host again", [
        attempt("onprem", W, drop("firewall-no-match"), "(westus-db public, rule deleted)"),
    ])
    OUT.step("Allow Azure services: the 0.0.0.0 rule (sources in the AzureCloud tag)")
    ctl("mysql", "server", "firewall-rule", "create", "--server-name", "westus-db", "--name",
        "AllowAllWindowsAzureIps", "--start-ip-address", "0.0.0.0", "--end-ip-address", "0.0.0.0")
    d.tries("Another customer's Azure VM and the on-premises host", [
        attempt("azure", W, ok_via("westus-db"), "(westus-db public, AzureCloud)"),
        attempt("onprem", W, drop("firewall-no-match"), "(westus-db public, not AzureCloud)"),
    ])
    OUT.step("publicNetworkAccess Disabled on both servers")
    for srv in ("westus-db", "eastus-db"):
        ctl("mysql", "server", "update", "--name", srv, "--public-network-access", "Disabled")
    d.tries("Every public path, and the private endpoint", [
        attempt("azure", W, drop("public-access-disabled"), "(westus-db public)"),
        attempt("client", W, drop("public-access-disabled"), "(westus-db public)"),
        attempt("onprem", E, drop("public-access-disabled"), "(eastus-db public)"),
        attempt("client", PE_IP, ok_via("eastus-db"), "(pe-east)"),
    ])
    OUT.step("publicNetworkAccess Enabled again")
    for srv in ("westus-db", "eastus-db"):
        ctl("mysql", "server", "update", "--name", srv, "--public-network-access", "Enabled")


def scenario_6(d):
    ctl = d.ctl
    OUT.head("Scenario 6: the service-endpoint subnet needs a VNet rule")
    d.tries("The sql-se host tries westus-db's public endpoint (no VNet rule)", [
        attempt("sehost", W, drop("vnet-rule-no-match"), "(westus-db public)"),
    ])
    OUT.step("An IP firewall rule covering the whole sql-se subnet")
    ctl("mysql", "server", "firewall-rule", "create", "--server-name", "westus-db", "--name", "sql-se-range",
        "--start-ip-address", "10.1.2.0", "--end-ip-address", "10.1.2.255")
    d.tries("Service-endpoint traffic is not judged by IP rules", [
        attempt("sehost", W, drop("vnet-rule-no-match"), "(westus-db public, IP rule only)"),
    ])
    OUT.step("A VNet rule on westus-db for subnet sql-se")
    ctl("mysql", "server", "vnet-rule", "create", "--server-name", "westus-db", "--name", "sql-se", "--vnet-name",
        VNET, "--subnet", "sql-se")
    d.tries("The sql-se host, to westus-db (VNet rule) and eastus-db (none)", [
        attempt("sehost", W, ok_via("westus-db"), "(westus-db public, VNet rule)"),
        attempt("sehost", E, drop("vnet-rule-no-match"), "(eastus-db public)"),
    ])


def scenario_7(d):
    ctl = d.ctl
    OUT.head("Scenario 7: explain and stats agree with what happened")
    agreed, total = d.explains
    d.record("explain vs. what happened, every try above", f"{total}/{total} agree", f"{agreed}/{total} agree",
             agreed == total and total > 0)
    OUT.step("The counters of the whole run")
    stats = d.stats()
    OUT.info(ctl("stats", table=True).rstrip())
    for reason in ("firewall-no-match", "vnet-rule-no-match", "pec-pending", "pec-rejected", "nsg-deny",
                   "public-access-disabled", "ct-invalid"):
        n = stats["drops"].get(reason, 0)
        d.record(f"stats drops {reason}", "> 0, seen in a step above",
                 f"{n} (in {d.reasons_seen.get(reason, 0)} steps)", n > 0 and d.reasons_seen.get(reason, 0) > 0)
    unexpected = {k: v for k, v in stats["drops"].items() if v and k not in d.reasons_seen}
    d.record("stats: no other drop reason", "none", ", ".join(f"{k} {v}" for k, v in unexpected.items()) or "none",
             not unexpected)
    hits = stats.get("nsgRules", {}).get("clients-nsg/deny-sql", 0)
    d.record("stats nsgRules clients-nsg/deny-sql", "> 0", str(hits), hits > 0)


def scenario_8(d):
    OUT.head("Scenario 8: NSG flow logs (version 2 tuples) of what happened")
    path = flow_log_path(d.env)
    OUT.step(f"linkgated appends them to {path} every second")
    client = addr("client")

    def tuples():
        """(NSG, rule, tuple) of every record written so far."""
        out = []
        try:
            with open(path) as f:
                for line in f:
                    r = json.loads(line)
                    nsg = r["resourceId"].rsplit("/", 1)[1]
                    for g in r["properties"]["flows"]:
                        for m in g["flows"]:
                            out += [(nsg, g["rule"], t) for t in m["flowTuples"]]
        except FileNotFoundError:
            pass
        return out

    def first(rule, mid, state):
        for nsg, r, t in tuples():
            f = t.split(",")
            if nsg == "CLIENTS-NSG" and r == rule and mid in t and len(f) == 13 and f[8] == state:
                return t
        return None

    want = [("UserRule_deny-sql", f",{client},{E},", "B", "the refused connection to eastus-db: D"),
            ("UserRule_allow-sql-westus", f",{client},{W},", "B", "a connection to westus-db begins: A, B"),
            ("UserRule_allow-sql-westus", f",{client},{W},", "E", "and ends, with its counts: E")]
    try:
        wait_until("the flow log", lambda: all(first(r, m, s) for r, m, s, _ in want), 15)
    except Failure:
        pass
    for rule, mid, state, what in want:
        t = first(rule, mid, state)
        ok = t is not None
        if ok and state == "E":
            ok = int(t.split(",")[9]) > 0 and int(t.split(",")[11]) > 0
        if ok and rule == "UserRule_deny-sql":
            ok = t.endswith(",3306,T,O,D,B,,,,")
        d.record(f"flow log CLIENTS-NSG {rule}: {what}", "a v2 tuple", t or "none", ok)
    # Each dataplane makes records because this agent logs, and lost none.
    fl = [p["flowLog"] for p in d.stats().get("dataplanes", {}).values() if p.get("flowLog")]
    written, lost = sum(f.get("written", 0) for f in fl), sum(f.get("lost", 0) for f in fl)
    d.record("stats dataplanes flowLog: records on, written, none lost", "on, written >= 3, lost 0",
             f"on {[f.get('on') for f in fl]}, written {written}, lost {lost}",
             bool(fl) and all(f.get("on") is True for f in fl) and written >= 3 and lost == 0)


SCENARIOS = [scenario_1, scenario_2, scenario_3, scenario_4, scenario_5, scenario_6, scenario_7, scenario_8]


def scenarios(d):
    """Each scenario in turn. One that cannot finish (a refused linkgatectl
    command, a process that died) is recorded as failed with the reason, and
    the next ones still run."""
    for fn in SCENARIOS:
        d.scenario = fn.__name__.split("_")[1]
        try:
            fn(d)
        except Exception as e:
            why = str(e) if isinstance(e, Failure) else f"{type(e).__name__}: {e}"
            if not isinstance(e, Failure):
                OUT.info(traceback.format_exc())
            d.record("scenario could not finish", "completes", why.replace("\n", " ")[:300], False)


# ----------------------------------------------------------------------------
# Setup and the run.

def setup(env, args, plane):
    OUT.head(f"Setup ({plane.name} dataplane), run {env.tag}, files in {env.tmp}")
    OUT.step("Preparing a MariaDB data directory (mariadb-install-db)")
    seed = prepare_datadir(env.tmp)

    OUT.step("Network namespaces and veths")
    env.add_ns("nic")
    for short, outer, a, nic_if, nic_a, vnet, role in LINKS:
        env.add_ns(short)
        env.veth(short, outer, "nic", nic_if)
        gw = nic_a.split("/")[0]
        env.run(short, ["ip", "addr", "add", a, "dev", outer])
        env.run(short, ["ip", "route", "add", "default", "via", gw])
        env.run("nic", ["ip", "addr", "add", nic_a, "dev", nic_if])
        # The dataplane writes finished checksums: the sender must not leave
        # them to an offload that a redirected frame no longer carries.
        env.run(short, ["ethtool", "-K", outer, "tx", "off"])
        # A veth receives frames redirected into it by XDP only when its own
        # side runs an XDP program (the pass program).
        env.run(short, ["ip", "link", "set", "dev", outer, "xdpdrv", "obj", args.pass_obj, "sec", "xdp"])
        OUT.info(f"{short:7} {a:17} {outer} <-> {nic_if} {nic_a:16} NIC host, "
                 f"{'VNet ' + vnet if vnet else 'no VNet':17} {role}")
    env.sysctl("nic", {"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0,
                       "net.ipv4.conf.default.rp_filter": 0})

    OUT.step("Two MariaDB servers, each in its own namespace")
    procs = {}
    for srv, (pub, short, region) in SERVERS.items():
        procs[short] = (start_mariadb(env, seed, short, region), region)
    for short, (p, region) in procs.items():
        wait_mariadb(env, p, short, region)
        OUT.info(f"mariadbd in {short} ({addr(short)}:3306) answers: {region}")

    sock = os.path.join(env.tmp, "linkgated.sock")
    state = os.path.join(env.tmp, "state.json")
    OUT.step(f"Starting the agent in the NIC host namespace")
    agents = plane.start(env, sock, state)
    OUT.cmd(plane.describe)
    ctl = Ctl(args.linkgatectl, sock)

    def up():
        for p in agents:
            if not p.alive():
                raise Failure(f"{p.name} exited:\n{p.log_tail()}")
        return ctl.raw(["network", "vnet", "list"], timeout=5).returncode == 0 and plane.ready()
    wait_until(f"linkgated with the {plane.name} dataplane", up, 30)

    tags = os.path.join(env.tmp, "service-tags.json")
    with open(tags, "w") as f:
        json.dump(SERVICE_TAGS, f, indent=2)

    OUT.step("The client VNet with its two subnets, and the two servers (public endpoints, backends)")
    ctl("network", "vnet", "create", "--name", VNET, "--address-prefixes", VNET_PREFIX, "--subnet-name", "clients",
        "--subnet-prefixes", "10.1.1.0/24")
    ctl("network", "vnet", "subnet", "create", "--vnet-name", VNET, "--name", "sql-se", "--address-prefixes",
        "10.1.2.0/24", "--service-endpoints", "Microsoft.Sql")
    for srv, (pub, short, region) in SERVERS.items():
        ctl("mysql", "server", "create", "--name", srv, "--public-ip", pub, "--backend", f"{addr(short)}:3306")
    return ctl, tags


def summary(rows):
    OUT.head("Summary")
    w = [max(len(str(r[i])) for r in rows + [("Scenario", "Step", "Expected", "Got")]) for i in range(3)]
    w[1] = min(w[1], 56)
    w[2] = min(w[2], 44)
    hdr = f"{'Scenario':{w[0]}}  {'Step':{w[1]}}  {'Expected':{w[2]}}  Result  Got"
    OUT.line(hdr)
    OUT.line("-" * len(hdr) + "-" * 20)
    for sc, step, exp, got, ok in rows:
        res = OUT.c("32", "ok    ") if ok else OUT.c("1;31", "FAIL  ")
        OUT.line(f"{sc:{w[0]}}  {step[:w[1]]:{w[1]}}  {exp[:w[2]]:{w[2]}}  {res}  {got}")


def main():
    global OUT
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="linkgate end-to-end scenarios with real MariaDB in namespaces")
    ap.add_argument("--build", default=os.path.join(os.path.dirname(here), "build"), help="meson build directory")
    ap.add_argument("--dataplane", choices=["xdp", "dpdk"], default="xdp")
    ap.add_argument("--dpdk", action="store_const", dest="dataplane", const="dpdk", help="same as --dataplane dpdk")
    ap.add_argument("--linkgated")
    ap.add_argument("--linkgatectl")
    ap.add_argument("--pass-obj", help="XDP pass program for the far ends of the veths")
    ap.add_argument("--linkgate-dpdk")
    ap.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    ap.add_argument("--tap", action="store_true", help="TAP output (narration as comments), for meson test")
    args = ap.parse_args()
    b = args.build
    args.linkgated = args.linkgated or os.path.join(b, "control/agent/linkgated")
    args.linkgatectl = args.linkgatectl or os.path.join(b, "control/agent/linkgatectl")
    args.pass_obj = args.pass_obj or os.path.join(b, "tests/pass.bpf.o")
    args.linkgate_dpdk = args.linkgate_dpdk or os.path.join(b, "dataplane/linkgate-dpdk")
    OUT = Out(args.color == "always" or (args.color == "auto" and sys.stdout.isatty()), tap=args.tap)

    if os.geteuid() != 0:
        print("e2e: needs root (network namespaces, XDP, bpffs)", file=sys.stderr)
        return 2
    plane = XdpPlane(args) if args.dataplane == "xdp" else DpdkPlane(args)
    try:
        plane.check()
        for tool in ("mariadb-install-db", "mariadbd", "mysql", "ip", "ethtool"):
            if not shutil.which(tool):
                raise Failure(f"{tool} not found on PATH (Debian packages mariadb-server, mariadb-client, "
                              "iproute2, ethtool)")
    except Failure as e:
        print(f"e2e: {e}", file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    remove_stale()
    tmp = tempfile.mkdtemp(prefix=f"{NS_PREFIX}-{os.getpid()}-")
    env = Env(tmp)
    demo = None
    rc = 2
    why = ""
    try:
        ctl, tags = setup(env, args, plane)
        demo = Demo(env, ctl)
        demo.tags_file = tags
        scenarios(demo)
        rc = 0 if all(r[4] for r in demo.rows) else 1
    except Failure as e:
        OUT.line()
        OUT.line(OUT.c("1;31", f"e2e: setup or control failure: {e}"))
        why = f"setup failed: {e}"
        for p in env.procs:
            if p.name.startswith("linkgate"):
                OUT.info(f"{p.name} log (tail):\n{p.log_tail()}")
        rc = 2
    except Interrupted as e:
        OUT.line(OUT.c("1;31", f"e2e: interrupted by {e}"))
        why = f"interrupted by {e}"
        rc = 130
    except Exception:
        OUT.line(OUT.c("1;31", "e2e: unexpected error"))
        OUT.info(traceback.format_exc())
        why = "unexpected error"
        rc = 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if demo and demo.rows:
            summary(demo.rows)
        OUT.step("Cleaning up: agent, mariadbd, mysql sessions, namespaces, veths, temp files")
        env.teardown()
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - OUT.t0
    if rc == 0:
        OUT.line(OUT.c("1;32", f"all {len(demo.rows)} checks as expected ({plane.name} dataplane), {took:.0f} s"))
    elif rc == 1:
        bad = sum(1 for r in demo.rows if not r[4])
        OUT.line(OUT.c("1;31", f"{bad} of {len(demo.rows)} checks not as expected ({plane.name} dataplane), "
                               f"{took:.0f} s"))
    if rc in (0, 1):
        OUT.plan()
    else:
        OUT.bail(why)
    return rc


if __name__ == "__main__":
    sys.exit(main())
