//! The process's TLS session-ticket keys: one edge-sni [`TicketStore`] for
//! every TLS config the process builds, so sessions resume across a
//! reload; kept in `[tickets] keys_file` so they resume across a restart;
//! shared with the other node of a pair over the peer link so they resume
//! on it after a failover.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use edge_sni::tickets::{TicketKeys, TicketStore};

static PROCESS: OnceLock<Arc<TicketStore>> = OnceLock::new();

/// Sets up the process's keys, before the first TLS config is built: those
/// in `file` when it holds some, else fresh ones (written there).
pub fn init(file: Option<PathBuf>) -> Result<Arc<TicketStore>, String> {
    let store = TicketStore::open(file)?;
    PROCESS
        .set(store.clone())
        .map_err(|_| "ticket keys set up twice".to_string())?;
    Ok(store)
}

/// The process's ticket producer (what `tls_tuning::tune` installs): the
/// one [`init`] set up, or fresh keys kept in memory only.
pub fn ticketer() -> Result<Arc<TicketKeys>, rustls::Error> {
    if let Some(s) = PROCESS.get() {
        return Ok(s.keys());
    }
    let store = TicketStore::open(None).map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
    Ok(PROCESS.get_or_init(|| store).keys())
}
