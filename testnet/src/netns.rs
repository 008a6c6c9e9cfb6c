//! Network namespaces, veth links and processes made by one test, removed
//! again on drop (also when the test panics). Every name starts with the
//! topology's prefix so cleanup deletes exactly what this test made.

use std::io;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// True when the test may run. Without root it prints why it is skipped;
/// under CI (`CI=true`) a skip is a failure, so this panics instead.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tun = Path::new("/dev/net/tun").exists();
    if root && tun {
        return true;
    }
    let why = if root {
        "/dev/net/tun is missing"
    } else {
        "needs root (namespaces, TUN)"
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}; CI=true forbids skipping");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Run a command, failing with its stderr if it exits non-zero.
pub fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

fn ip(args: &[&str]) -> io::Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

/// The name prefix of a tag's topologies (the pid follows it).
pub fn prefix_for(tag: &str) -> String {
    format!("hy{tag}")
}

/// The exact prefix [`Topology::new`] gives this process's topologies for
/// `tag`: "hy", at most 3 characters of the tag, the pid. With suffixes of
/// up to 5 characters an interface name stays within Linux's 15 bytes.
pub fn topology_prefix(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(3)
        .collect();
    format!("{}{}", prefix_for(&tag), std::process::id() % 100_000)
}

/// Namespaces and processes of one test.
pub struct Topology {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Topology {
    /// `tag`: up to 3 characters naming the test; the prefix adds the pid
    /// so parallel runs do not collide (interface names stay <= 15 bytes).
    pub fn new(tag: &str) -> Topology {
        let prefix = topology_prefix(tag);
        Topology {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A name under this topology's prefix (for links and TUN devices).
    pub fn name(&self, short: &str) -> String {
        let name = format!("{}{short}", self.prefix);
        assert!(name.len() <= 15, "interface name {name} too long");
        name
    }

    /// Create namespace `<prefix><short>` with loopback up; returns its name.
    ///
    /// Its links get no IPv6 duplicate address detection: a link-local
    /// address stays tentative for a second or two otherwise, and a node
    /// forwarding a packet sends no neighbour solicitation until it is not,
    /// so the first IPv6 packets through a fresh topology would wait.
    pub fn namespace(&mut self, short: &str) -> io::Result<String> {
        let ns = self.name(short);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        self.sysctl(&ns, "net.ipv6.conf.default.accept_dad", "0")?;
        Ok(ns)
    }

    /// A veth pair between two namespaces with addresses in CIDR form (an
    /// empty address leaves that end unnumbered, e.g. for a bridge port).
    pub fn veth(&self, a: (&str, &str), b: (&str, &str), mtu: u32) -> io::Result<(String, String)> {
        let (ns_a, addr_a) = a;
        let (ns_b, addr_b) = b;
        let la = self.name(&format!("v{}", self.link_id(ns_a, ns_b, 'a')));
        let lb = self.name(&format!("v{}", self.link_id(ns_a, ns_b, 'b')));
        ip(&[
            "link",
            "add",
            &la,
            "mtu",
            &mtu.to_string(),
            "netns",
            ns_a,
            "type",
            "veth",
            "peer",
            "name",
            &lb,
            "mtu",
            &mtu.to_string(),
            "netns",
            ns_b,
        ])?;
        for (ns, link, addr) in [(ns_a, &la, addr_a), (ns_b, &lb, addr_b)] {
            if !addr.is_empty() {
                ip(&["-n", ns, "addr", "add", addr, "dev", link])?;
            }
            ip(&["-n", ns, "link", "set", link, "up"])?;
        }
        Ok((la, lb))
    }

    fn link_id(&self, a: &str, b: &str, side: char) -> String {
        let short = |ns: &str| {
            ns.trim_start_matches(&self.prefix)
                .chars()
                .take(2)
                .collect::<String>()
        };
        format!("{}{}{side}", short(a), short(b))
    }

    /// Give `link` in `ns` the IPv6 address `cidr`, usable at once (no
    /// duplicate address detection: the test made the link and knows the
    /// address is unique on it).
    pub fn add_ipv6(&self, ns: &str, link: &str, cidr: &str) -> io::Result<()> {
        self.ip(ns, &["-6", "addr", "add", cidr, "dev", link, "nodad"])
    }

    /// Run `ip <args>` inside `ns`.
    pub fn ip(&self, ns: &str, args: &[&str]) -> io::Result<()> {
        let mut full = vec!["-n", ns];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Set a sysctl inside `ns` (e.g. `net.ipv4.ip_forward`, `1`).
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) -> io::Result<()> {
        run(Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ]))
        .map(|_| ())
    }

    /// Make `ns` forward packets (IPv4 and IPv6) and accept asymmetric
    /// routes (TUN replies).
    pub fn router(&self, ns: &str) -> io::Result<()> {
        self.sysctl(ns, "net.ipv4.ip_forward", "1")?;
        self.sysctl(ns, "net.ipv6.conf.all.forwarding", "1")?;
        self.sysctl(ns, "net.ipv4.conf.all.rp_filter", "0")?;
        self.sysctl(ns, "net.ipv4.conf.default.rp_filter", "0")
    }

    /// A command that runs `program` inside `ns`.
    pub fn command(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Start a long-running process that is killed when the topology drops.
    pub fn spawn(&mut self, label: &str, mut cmd: Command) -> io::Result<u32> {
        let child = cmd.stdin(Stdio::null()).spawn()?;
        let pid = child.id();
        self.children.push((label.to_string(), child));
        Ok(pid)
    }

    /// Process ids of the processes started with [`Topology::spawn`], by label.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .map(|(l, c)| (l.clone(), c.id()))
            .collect()
    }

    /// Whether the newest process started under `label` is still running.
    pub fn alive(&mut self, label: &str) -> bool {
        self.children
            .iter_mut()
            .rev()
            .find(|(l, _)| l == label)
            .is_some_and(|(_, c)| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL the newest process started under `label` (a restarted
    /// process reuses its label) and reap it.
    pub fn kill(&mut self, label: &str) -> io::Result<()> {
        let (_, child) = self
            .children
            .iter_mut()
            .rev()
            .find(|(l, _)| l == label)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no process {label}"))
            })?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Send `signal` (e.g. `libc::SIGSTOP`) to the newest process started under `label`.
    pub fn signal(&self, label: &str, signal: i32) -> io::Result<()> {
        let (_, child) = self
            .children
            .iter()
            .rev()
            .find(|(l, _)| l == label)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no process {label}"))
            })?;
        // `ip netns exec` execs the program, so the child pid is the program's.
        // SAFETY: kill(2) on a pid we spawned and have not reaped.
        if unsafe { libc::kill(child.id() as i32, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait until `ip link show <link>` succeeds inside `ns`.
    pub fn wait_link(&self, ns: &str, link: &str, timeout: Duration) -> io::Result<()> {
        let end = Instant::now() + timeout;
        loop {
            // Up, not only there: a route through a link that is down is
            // refused ("Device for nexthop is not up").
            let shown = run(Command::new("ip").args(["-n", ns, "-o", "link", "show", link]));
            if shown.is_ok_and(|out| link_is_up(&String::from_utf8_lossy(&out.stdout))) {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("link {link} did not come up in {ns}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting a namespace removes the links and TUN devices inside it.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Whether `ip -o link show` printed a link whose flags include `UP`.
fn link_is_up(line: &str) -> bool {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"))
}

/// Kill every process in, and delete, each namespace whose name starts with
/// `prefix`: the last resort of an interrupted run (SIGINT handler), which
/// cannot reach the `Topology` that owns them.
pub fn remove_by_prefix(prefix: &str) {
    let Ok(out) = run(Command::new("ip").args(["netns", "list"])) else {
        return;
    };
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if !ns.starts_with(prefix) {
            continue;
        }
        if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", ns])) {
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill(2) with a pid read from the namespace's process list.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = ip(&["netns", "del", ns]);
    }
}

/// On SIGINT/SIGTERM, remove everything under `prefix` and exit 130.
/// Call before spawning other threads so they inherit the blocked mask.
pub fn cleanup_on_interrupt(prefix: String) -> io::Result<()> {
    // SAFETY: sigset_t initialised by sigemptyset before use; the mask is
    // changed before other threads exist.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        set
    };
    struct Set(libc::sigset_t);
    // SAFETY: a sigset_t is plain data.
    unsafe impl Send for Set {}
    let set = Set(set);
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            let set = set;
            let mut sig: libc::c_int = 0;
            // SAFETY: valid set and out pointer.
            if unsafe { libc::sigwait(&set.0, &mut sig) } == 0 {
                eprintln!("interrupted: removing namespaces {prefix}*");
                remove_by_prefix(&prefix);
                std::process::exit(130);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::link_is_up;

    #[test]
    fn a_link_is_up_only_when_its_flags_say_so() {
        let up = "7: hyt: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1500 qdisc fq_codel";
        let down = "7: hyt: <POINTOPOINT,MULTICAST,NOARP> mtu 1500 qdisc noop state DOWN";
        let lower_only = "7: hyt: <NO-CARRIER,LOWER_UP> mtu 1500";
        assert!(link_is_up(up));
        assert!(!link_is_up(down));
        assert!(!link_is_up(lower_only));
        assert!(!link_is_up(""));
    }
}
