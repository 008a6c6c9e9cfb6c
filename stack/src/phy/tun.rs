//! Linux TUN device.
