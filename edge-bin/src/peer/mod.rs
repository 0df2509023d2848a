//! `[peer]`: the link between the two nodes of a pair (edge-vrrp's
//! `peer`: mutual TLS with a pinned certificate, size-capped frames) and
//! what travels on it:
//!
//! - the TLS session-ticket keys (edge-sni's [`TicketStore`]), so a client resumes on
//!   either node; each node rotates them, the pair converges by edge-sni's
//!   rule (the higher generation wins);
//! - the server states set with `edge admin` (drain, maint, weights), each
//!   change sent as it is made, every state sent when the link comes up;
//!   the newest change wins (wall-clock milliseconds, then node name; see
//!   `admin::registry`).
//!
//! Started once at start: a reload does not change the link (restart to).

mod key;

use std::sync::Arc;

use base64::Engine as _;
use edge_sni::tickets::{KeySet, Offered};
use edge_vrrp::peer::{PeerConfig, PeerHandler, PeerLink, PeerSender};
use serde::{Deserialize, Serialize};

pub use edge_sni::tickets::TicketStore;
pub use key::write_credentials;

use crate::admin::{Admin, ServerRecord};
use crate::config::PeerSettings;

/// A message between the nodes of a pair. `Debug` never shows key bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerMessage {
    /// The sender's ticket key set (edge-sni's encoding, base64). Travels
    /// only inside the link's TLS.
    TicketKeys { set: String },
    /// One server's admin state with its stamp.
    Server(ServerRecord),
}

impl std::fmt::Debug for PeerMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerMessage::TicketKeys { .. } => f.write_str("TicketKeys(..)"),
            PeerMessage::Server(r) => f.debug_tuple("Server").field(r).finish(),
        }
    }
}

impl PeerMessage {
    fn keys(set: &KeySet) -> Self {
        PeerMessage::TicketKeys {
            set: base64::engine::general_purpose::STANDARD.encode(set.encode()),
        }
    }
}

/// What this node does with the peer's messages.
struct Node {
    admin: Arc<Admin>,
    tickets: Arc<TicketStore>,
    to_peer: PeerSender<PeerMessage>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

impl PeerHandler<PeerMessage> for Node {
    fn on_connect(&self) -> Vec<PeerMessage> {
        let mut v = vec![PeerMessage::keys(&self.tickets.key_set())];
        v.extend(self.admin.records().into_iter().map(PeerMessage::Server));
        v
    }

    fn on_message(&self, msg: PeerMessage) {
        match msg {
            PeerMessage::TicketKeys { set } => {
                let theirs = base64::engine::general_purpose::STANDARD
                    .decode(set)
                    .map_err(|e| e.to_string())
                    .and_then(|b| KeySet::decode(&b).map_err(|e| e.to_string()));
                let theirs = match theirs {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "peer: ticket keys unreadable, ignored");
                        return;
                    }
                };
                match self.tickets.offer(&theirs) {
                    Offered::Same => {}
                    // Ours wins: the peer should take it.
                    Offered::Kept => self
                        .to_peer
                        .send(PeerMessage::keys(&self.tickets.key_set())),
                    Offered::Changed(merged) if merged != theirs => {
                        self.to_peer.send(PeerMessage::keys(&merged))
                    }
                    Offered::Changed(_) => {}
                }
            }
            PeerMessage::Server(r) => {
                self.admin.apply_peer(&r);
            }
        }
    }
}

/// Starts the peer link of `[peer]`: shares ticket keys and server states.
pub async fn start(
    settings: &PeerSettings,
    admin: Arc<Admin>,
    tickets: Arc<TicketStore>,
) -> Result<PeerLink, String> {
    let c = &settings.credentials;
    let mut config = PeerConfig::new(
        settings.listen,
        settings.address,
        c.cert_chain.clone(),
        c.key.clone_key(),
        c.pinned.clone(),
    );
    config.keepalive = settings.keepalive;
    config.timeout = settings.timeout;
    let (to_peer, outbox) = edge_vrrp::peer::channel(1024);
    let node = Arc::new(Node {
        admin: admin.clone(),
        tickets: tickets.clone(),
        to_peer: to_peer.clone(),
    });
    {
        let to_peer = to_peer.clone();
        admin.share_changes(
            settings.listen.to_string(),
            Arc::new(move |r| to_peer.send(PeerMessage::Server(r))),
        );
    }
    tickets.on_rotation(Arc::new(move |set| to_peer.send(PeerMessage::keys(set))));
    PeerLink::start(config, outbox, node)
        .await
        .map_err(|e| format!("cannot start the peer link on {}: {e}", settings.listen))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire form is stable JSON, and no key byte shows in `Debug`.
    #[test]
    fn messages_serialise_and_hide_keys() {
        let set = KeySet::generate(1_700_000_000).unwrap();
        let m = PeerMessage::keys(&set);
        let json = serde_json::to_string(&m).unwrap();
        assert!(
            json.starts_with(r#"{"kind":"ticket_keys","set":""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<PeerMessage>(&json).unwrap(), m);
        let PeerMessage::TicketKeys { set: b64 } = &m else {
            unreachable!()
        };
        assert!(!format!("{m:?}").contains(b64.as_str()));
        let r: PeerMessage = serde_json::from_str(
            r#"{"kind":"server","pool":"app","server":"10.0.0.2:80","state":"drain","stamp_ms":5,"node":"a"}"#,
        )
        .unwrap();
        assert!(matches!(r, PeerMessage::Server(ref e) if e.state == "drain" && e.stamp_ms == 5));
    }
}
