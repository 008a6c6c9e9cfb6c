//! A `std::net`-like API over the sans-IO core, for servers that embed Hydra.
//!
//! [`NetStack::spawn`] starts one driver thread that owns the device and
//! runs the core: it waits on the device (and on any file descriptors a
//! [`Hooks`] implementation adds, which is how the replica plugs in the
//! ack channel), feeds packets and timeouts in, writes packets out and wakes
//! application threads. [`TcpListener`] and [`TcpStream`] then behave like
//! their `std::net` namesakes: blocking by default, `set_nonblocking`,
//! read/write timeouts, `shutdown`, and `std::io::Read`/`Write`.
//! [`Poller`] is the non-blocking event interface for event loops.

mod driver;
mod listener;
mod ordered;
mod poller;
mod stream;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::iface::{Event, Stack};
use crate::phy::Device;
use crate::Config;
use hydra_base::time::Instant;

pub use listener::TcpListener;
pub use ordered::{OrderedEvent, OrderedListener};
pub use poller::Poller;
pub use stream::{AtomicStep, TcpStream};

/// Extension points of the driver loop. The replica implements this to run
/// the ack channel next to the stack; plain servers use `()`.
pub trait Hooks: Send + 'static {
    /// Extra file descriptors to wait on for readability.
    fn fds(&self) -> Vec<RawFd> {
        Vec::new()
    }
    /// Called once per loop turn, stack locked, after device input and
    /// before output: read the extra fds, drive timers, adjust the stack.
    fn run(&mut self, _now: Instant, _stack: &mut Stack) {}
    /// Earliest time `run` wants to be called again.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    /// Sees every stack event before applications are woken.
    fn on_event(&mut self, _now: Instant, _stack: &mut Stack, _event: Event) {}
    /// Called after the turn's events, before output is taken from the stack:
    /// act on what the events changed once per turn rather than per event.
    fn after_events(&mut self, _now: Instant, _stack: &mut Stack) {}
    /// Whether packets may be written to the device now (a replica that has
    /// lost its lease must stay silent). Packets not sent are dropped and
    /// left to TCP retransmission.
    fn may_transmit(&self, _now: Instant) -> bool {
        true
    }
}

impl Hooks for () {}

/// What a blocked application thread waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum WaitKey {
    /// Anything about one connection (readable, writable, established, closed).
    Conn(crate::iface::ConnKey),
    /// A listener has a connection to accept.
    Listener(SocketAddr),
    /// Any event (pollers).
    Any,
}

/// State shared by the driver and the application handles.
struct Shared {
    inner: Mutex<Inner>,
    wake: driver::Waker,
    /// The stack's own addresses: connections start from the first of the
    /// peer's family.
    addresses: Vec<IpAddr>,
    clock: std::time::Instant,
}

struct Inner {
    stack: Stack,
    /// Events kept for [`Poller`] users (coalesced, so bounded by 6 per connection).
    poll_events: std::collections::VecDeque<Event>,
    pollers: usize,
    stopped: bool,
    next_port: u16,
    /// Blocked threads by what they wait for: the driver wakes only those an
    /// event concerns (a shared condvar would wake every thread per event).
    waiters: HashMap<WaitKey, Vec<Arc<Condvar>>, ahash::RandomState>,
    /// Async tasks by what they wait for (see [`TcpStream::register_waker`]):
    /// taken and woken once by the next event that concerns them.
    wakers: HashMap<WaitKey, Vec<std::task::Waker>, ahash::RandomState>,
}

impl Inner {
    /// Condvars to signal and wakers to wake for `event` (collected under
    /// the lock, signalled after).
    fn waiters_for(
        &mut self,
        event: &Event,
        out: &mut Vec<Arc<Condvar>>,
        tasks: &mut Vec<std::task::Waker>,
    ) {
        let key = match *event {
            Event::Acceptable { local } => WaitKey::Listener(local),
            Event::Readable(k) | Event::Writable(k) | Event::Established(k) | Event::Closed(k) => {
                WaitKey::Conn(k)
            }
            Event::Progress(_) => return,
        };
        for k in [key, WaitKey::Any] {
            if let Some(list) = self.waiters.get(&k) {
                out.extend(list.iter().cloned());
            }
            if let Some(list) = self.wakers.remove(&k) {
                tasks.extend(list);
            }
        }
    }

    /// Have `waker` woken by the next event about `on` (or at stop).
    fn register_waker(&mut self, on: WaitKey, waker: &std::task::Waker) {
        let list = self.wakers.entry(on).or_default();
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }
}

/// A running stack: cheap to clone, stops when the last clone is dropped
/// or [`NetStack::stop`] is called.
#[derive(Clone)]
pub struct NetStack {
    shared: Arc<Shared>,
    _owner: Arc<StopOnDrop>,
}

struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        stop(&self.0);
    }
}

fn stop(shared: &Shared) {
    let mut everyone = Vec::new();
    let mut tasks = Vec::new();
    if let Ok(mut inner) = shared.inner.lock() {
        inner.stopped = true;
        everyone = inner.waiters.values().flatten().cloned().collect();
        tasks = inner.wakers.drain().flat_map(|(_, w)| w).collect();
    }
    shared.wake.wake();
    for cv in everyone {
        cv.notify_all();
    }
    for w in tasks {
        w.wake();
    }
}

impl NetStack {
    /// Start a stack on `device` whose own addresses are `addresses`: an
    /// IPv4 address, an IPv6 address, or one of each for a dual-stack host.
    /// Listeners take connections to whatever the device delivers;
    /// [`TcpStream::connect`] starts from the first address of the peer's
    /// family. Fails with `InvalidInput` when `addresses` is empty.
    ///
    /// ```no_run
    /// # fn main() -> std::io::Result<()> {
    /// use std::net::IpAddr;
    /// use stack::phy::tun::Tun;
    /// use stack::socket::NetStack;
    ///
    /// let tun = Tun::open("hydra0", 1500)?;
    /// let addresses: [IpAddr; 2] = ["198.18.20.1".parse().unwrap(), "fd00:20::1".parse().unwrap()];
    /// let net = NetStack::spawn(stack::Config::default(), &addresses, tun)?;
    /// assert_eq!(net.addresses().len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn spawn<D: Device + Send + 'static>(
        config: Config,
        addresses: &[IpAddr],
        device: D,
    ) -> io::Result<NetStack> {
        Self::spawn_with_hooks(Stack::new(config), addresses, device, ())
    }

    /// Start a driver for an existing core (any role) with extension hooks;
    /// `addresses` as for [`spawn`](Self::spawn).
    pub fn spawn_with_hooks<D: Device + Send + 'static, H: Hooks>(
        stack: Stack,
        addresses: &[IpAddr],
        device: D,
        hooks: H,
    ) -> io::Result<NetStack> {
        if addresses.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a network stack needs at least one address of its own",
            ));
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                stack,
                poll_events: Default::default(),
                pollers: 0,
                stopped: false,
                next_port: 49152,
                waiters: HashMap::default(),
                wakers: HashMap::default(),
            }),
            wake: driver::Waker::new()?,
            addresses: addresses.to_vec(),
            clock: std::time::Instant::now(),
        });
        let driver_shared = shared.clone();
        std::thread::Builder::new()
            .name("hydra-driver".into())
            .spawn(move || driver::run(driver_shared, device, hooks))?;
        Ok(NetStack {
            _owner: Arc::new(StopOnDrop(shared.clone())),
            shared,
        })
    }

    /// The stack's own addresses, as given to [`spawn`](Self::spawn).
    pub fn addresses(&self) -> &[IpAddr] {
        &self.shared.addresses
    }

    /// Run `f` on the core with the lock held (status pages, replication).
    pub fn with_stack<R>(&self, f: impl FnOnce(&mut Stack) -> R) -> R {
        let mut inner = self.lock();
        let r = f(&mut inner.stack);
        drop(inner);
        self.shared.wake.wake();
        r
    }

    /// The core's clock: microseconds since this stack started.
    pub fn now(&self) -> Instant {
        now(&self.shared)
    }

    /// Stop the driver thread. Open handles then fail with `NotConnected`.
    pub fn stop(&self) {
        stop(&self.shared);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.shared)
    }
}

fn now(shared: &Shared) -> Instant {
    Instant::from_micros(shared.clock.elapsed().as_micros() as u64)
}

/// A poisoned lock means a panic in another thread already; carry on with
/// the data as it is rather than cascade the panic into every handle.
fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared.inner.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wait until the driver signals something about `on`, up to `deadline`
/// (None = forever). Returns false on timeout.
fn wait_change<'a>(
    _shared: &'a Shared,
    mut guard: MutexGuard<'a, Inner>,
    on: WaitKey,
    deadline: Option<std::time::Instant>,
) -> (MutexGuard<'a, Inner>, bool) {
    let cv = Arc::new(Condvar::new());
    guard.waiters.entry(on).or_default().push(cv.clone());
    let (mut guard, in_time) = match deadline {
        None => (cv.wait(guard).unwrap_or_else(|p| p.into_inner()), true),
        Some(d) => {
            let left = d.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                (guard, false)
            } else {
                let (g, r) = cv
                    .wait_timeout(guard, left)
                    .unwrap_or_else(|p| p.into_inner());
                (g, !r.timed_out() || std::time::Instant::now() < d)
            }
        }
    };
    if let Some(list) = guard.waiters.get_mut(&on) {
        list.retain(|c| !Arc::ptr_eq(c, &cv));
        if list.is_empty() {
            guard.waiters.remove(&on);
        }
    }
    (guard, in_time)
}

fn stopped_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "network stack stopped")
}

/// The local address a connection to `remote` starts from: the stack's
/// first address of the same family.
fn local_addr(shared: &Shared, remote: SocketAddr, port: u16) -> io::Result<SocketAddr> {
    let ip = shared
        .addresses
        .iter()
        .find(|a| a.is_ipv4() == remote.is_ipv4())
        .ok_or_else(|| {
            let family = if remote.is_ipv4() { "IPv4" } else { "IPv6" };
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("the stack has no {family} address to connect to {remote} from"),
            )
        })?;
    Ok(SocketAddr::new(*ip, port))
}

#[cfg(test)]
mod tests;
