//! The driver's error type.

use crate::config::ConfigError;

/// Why an [`Instance`](crate::Instance) could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was refused (the error names the field).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A netlink request failed.
    #[error("netlink: {what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The interface has no usable address to advertise from.
    #[error("interface {interface} has no {family} address to send advertisements from")]
    NoPrimaryAddress {
        /// The interface.
        interface: String,
        /// "IPv4" or "IPv6 link-local".
        family: &'static str,
    },
    /// The instance's task is gone.
    #[error("the VRRP instance has stopped")]
    Stopped,
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    pub(crate) fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
        let what = what.into();
        move |source| Error::Netlink { what, source }
    }
}
