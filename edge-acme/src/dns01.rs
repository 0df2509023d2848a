//! DNS-01: `_acme-challenge` TXT records published on the operator's
//! authoritative server through RFC 2136 dynamic updates signed with TSIG
//! (RFC 8945), and looked up on the zone's servers before the CA is told.
//!
//! The DNS messages are hickory-proto's (update builders, TSIG signer and
//! verifier); this module only carries them over TCP (updates) and UDP
//! (lookups) and reads the answers, never trusting them: an answer that does
//! not parse, carries another id or a bad signature is an error, not a panic.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm as HickoryTsig;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordSet, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::Error;

/// The TSIG MAC algorithm shared with the DNS server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TsigAlgorithm {
    /// `hmac-sha256` (default; what `tsig-keygen` and `keymgr` make by default).
    #[default]
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name as BIND and Knot spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    fn hickory(self) -> HickoryTsig {
        match self {
            Self::HmacSha256 => HickoryTsig::HmacSha256,
            Self::HmacSha384 => HickoryTsig::HmacSha384,
            Self::HmacSha512 => HickoryTsig::HmacSha512,
        }
    }
}

impl std::str::FromStr for TsigAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().trim_end_matches('.') {
            "hmac-sha256" => Ok(Self::HmacSha256),
            "hmac-sha384" => Ok(Self::HmacSha384),
            "hmac-sha512" => Ok(Self::HmacSha512),
            _ => Err(format!(
                "unknown TSIG algorithm {s:?} (expected \"hmac-sha256\", \"hmac-sha384\" or \"hmac-sha512\")"
            )),
        }
    }
}

/// Default [`DnsUpdateConfig::propagation_timeout`]: 2 minutes.
pub const DEFAULT_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);

/// Where and how DNS-01 TXT records are published: the zone's primary
/// server accepting RFC 2136 updates signed with a TSIG key.
#[derive(Clone, PartialEq, Eq)]
pub struct DnsUpdateConfig {
    /// The server the updates are sent to (over TCP).
    pub server: SocketAddr,
    /// The zone updated (`example.com`); every DNS-01 name must be in it.
    pub zone: String,
    /// The TSIG key's name, as the server knows it.
    pub tsig_key: String,
    /// The TSIG algorithm (default [`TsigAlgorithm::HmacSha256`]).
    pub tsig_algorithm: TsigAlgorithm,
    /// The TSIG secret (decoded, not base64).
    pub tsig_secret: Vec<u8>,
    /// The zone's authoritative servers, asked directly (UDP) until each
    /// one serves the TXT record before the CA is told to validate
    /// (default empty: [`server`](Self::server) alone).
    pub check_servers: Vec<SocketAddr>,
    /// How long to wait for every check server to serve the record
    /// (default [`DEFAULT_PROPAGATION_TIMEOUT`]).
    pub propagation_timeout: Duration,
    /// Also wait for the servers the zone's NS records name (their
    /// addresses as [`server`](Self::server) serves them, port 53)
    /// (default false).
    pub check_ns: bool,
    /// TTL of the TXT records (default 60 s).
    pub ttl: u32,
    /// Limit on each DNS exchange (default 5 s).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for DnsUpdateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsUpdateConfig")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("tsig_key", &self.tsig_key)
            .field("tsig_algorithm", &self.tsig_algorithm)
            .field("tsig_secret", &"<redacted>")
            .field("check_servers", &self.check_servers)
            .field("propagation_timeout", &self.propagation_timeout)
            .field("check_ns", &self.check_ns)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl DnsUpdateConfig {
    /// Updates of `zone` sent to `server`, signed with the TSIG key
    /// `tsig_key` (hmac-sha256, `secret` decoded); other settings default.
    pub fn new(
        server: SocketAddr,
        zone: impl Into<String>,
        tsig_key: impl Into<String>,
        secret: Vec<u8>,
    ) -> Self {
        Self {
            server,
            zone: normalize(&zone.into()),
            tsig_key: tsig_key.into(),
            tsig_algorithm: TsigAlgorithm::default(),
            tsig_secret: secret,
            check_servers: Vec::new(),
            propagation_timeout: DEFAULT_PROPAGATION_TIMEOUT,
            check_ns: false,
            ttl: 60,
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The servers looked at before the CA is told: `check_servers`, or the
    /// update server.
    pub fn servers_to_check(&self) -> Vec<SocketAddr> {
        if self.check_servers.is_empty() {
            vec![self.server]
        } else {
            self.check_servers.clone()
        }
    }

    /// Whether `name` (a certificate name, `*.` allowed) is in the zone.
    pub fn covers(&self, name: &str) -> bool {
        let name = normalize(name.trim_start_matches("*."));
        name == self.zone || name.ends_with(&format!(".{}", self.zone))
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.tsig_secret.is_empty() {
            return Err("the TSIG secret is empty".into());
        }
        zone_name(&self.zone)?;
        Name::from_ascii(&self.tsig_key)
            .map_err(|e| format!("TSIG key name {:?}: {e}", self.tsig_key))?;
        if self.propagation_timeout.is_zero() {
            return Err("propagation_timeout is 0".into());
        }
        Ok(())
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn zone_name(zone: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(zone).map_err(|e| format!("zone {zone:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// The TXT record name for a certificate name: `_acme-challenge.NAME`
/// (the wildcard's base name for `*.NAME`).
pub fn challenge_name(name: &str) -> String {
    format!(
        "_acme-challenge.{}",
        normalize(name.trim_start_matches("*."))
    )
}

/// Publishes, removes and looks up DNS-01 TXT records.
#[derive(Debug, Clone)]
pub struct DnsUpdater {
    config: DnsUpdateConfig,
}

impl DnsUpdater {
    /// An updater for `config` (checked: zone and key names, secret).
    pub fn new(config: DnsUpdateConfig) -> Result<Self, Error> {
        config
            .validate()
            .map_err(|e| Error::Config(format!("[dns-01] {e}")))?;
        Ok(Self { config })
    }

    /// The settings.
    pub fn config(&self) -> &DnsUpdateConfig {
        &self.config
    }

    /// Adds the TXT record `value` at `name` (absolute or not, e.g.
    /// `_acme-challenge.www.example.com`), beside any other values there.
    pub async fn publish(&self, name: &str, value: &str) -> Result<(), Error> {
        self.update(name, value, true).await
    }

    /// Removes the TXT record `value` at `name`; other values stay. Removing
    /// a record that is not there succeeds.
    pub async fn remove(&self, name: &str, value: &str) -> Result<(), Error> {
        self.update(name, value, false).await
    }

    /// Builds the signed UPDATE message (and the verifier of its answer).
    pub(crate) fn update_message(
        &self,
        name: &str,
        value: &str,
        add: bool,
        now_unix: u32,
    ) -> Result<(Message, hickory_proto::op::MessageVerifier), String> {
        let c = &self.config;
        let zone = zone_name(&c.zone)?;
        let mut owner = Name::from_ascii(name).map_err(|e| format!("{name:?}: {e}"))?;
        owner.set_fqdn(true);
        if !zone.zone_of(&owner) {
            return Err(format!("{name} is not in the zone {}", c.zone));
        }
        let record = Record::from_rdata(owner, c.ttl, RData::TXT(TXT::new(vec![value.to_owned()])));
        let rrset = RecordSet::from(record);
        let mut message = if add {
            update_message::append(rrset, zone, false, false)
        } else {
            update_message::delete_by_rdata(rrset, zone, false)
        };
        let mut key = Name::from_ascii(&c.tsig_key).map_err(|e| e.to_string())?;
        key.set_fqdn(true);
        let signer = TSigner::new(c.tsig_secret.clone(), c.tsig_algorithm.hickory(), key, 300)
            .map_err(|e| format!("TSIG: {e}"))?;
        let verifier = message
            .finalize(&signer, now_unix)
            .map_err(|e| format!("signing the update: {e}"))?
            .ok_or("the TSIG signer gave no verifier")?;
        Ok((message, verifier))
    }

    async fn update(&self, name: &str, value: &str, add: bool) -> Result<(), Error> {
        let c = &self.config;
        let what = if add { "adding" } else { "removing" };
        let fail = |problem: String| Error::Dns {
            server: c.server,
            problem: format!("{what} TXT {name}: {problem}"),
        };
        let (message, mut verifier) = self
            .update_message(name, value, add, unix_now())
            .map_err(fail)?;
        let id = message.id();
        let bytes = message.to_vec().map_err(|e| fail(e.to_string()))?;
        let answer = tokio::time::timeout(c.request_timeout, tcp_exchange(c.server, &bytes))
            .await
            .map_err(|_| fail(format!("no answer within {:?}", c.request_timeout)))?
            .map_err(|e| fail(e.to_string()))?;
        check_update_answer(&answer, id, &c.tsig_key, &mut verifier).map_err(fail)
    }

    /// Whether `server` serves the TXT record `value` at `name` now.
    pub async fn is_visible(
        &self,
        server: SocketAddr,
        name: &str,
        value: &str,
    ) -> Result<bool, Error> {
        let records = self.lookup(server, name, RecordType::TXT).await?;
        Ok(records.iter().any(|r| match r.data() {
            RData::TXT(txt) => txt.txt_data().iter().any(|s| &**s == value.as_bytes()),
            _ => false,
        }))
    }

    /// The answer records of a `rtype` query for `name` to `server` (UDP,
    /// no recursion).
    async fn lookup(
        &self,
        server: SocketAddr,
        name: &str,
        rtype: RecordType,
    ) -> Result<Vec<Record>, Error> {
        let fail = |problem: String| Error::Dns {
            server,
            problem: format!("looking up {rtype} {name}: {problem}"),
        };
        let query = query(name, rtype).map_err(fail)?;
        let id = query.id();
        let bytes = query.to_vec().map_err(|e| fail(e.to_string()))?;
        let timeout = self.config.request_timeout;
        let answer = tokio::time::timeout(timeout, udp_exchange(server, &bytes))
            .await
            .map_err(|_| fail(format!("no answer within {timeout:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        read_answer(&answer, id).map_err(fail)
    }

    /// The zone's authoritative servers by its NS records, as `server`
    /// serves them: each NS name's addresses (A, AAAA) there, port 53.
    pub async fn name_servers(&self) -> Result<Vec<SocketAddr>, Error> {
        let server = self.config.server;
        let mut out = Vec::new();
        for ns in self
            .lookup(server, &self.config.zone, RecordType::NS)
            .await?
        {
            let RData::NS(ns) = ns.data() else { continue };
            let host = ns.0.to_ascii();
            for rtype in [RecordType::A, RecordType::AAAA] {
                for r in self.lookup(server, &host, rtype).await? {
                    let ip: std::net::IpAddr = match r.data() {
                        RData::A(a) => a.0.into(),
                        RData::AAAA(a) => a.0.into(),
                        _ => continue,
                    };
                    let addr = SocketAddr::new(ip, 53);
                    if !out.contains(&addr) {
                        out.push(addr);
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(Error::Dns {
                server,
                problem: format!("no NS record of {} with an address", self.config.zone),
            });
        }
        Ok(out)
    }

    /// Waits until every server of
    /// [`servers_to_check`](DnsUpdateConfig::servers_to_check) serves the
    /// record, asking each every half second, up to `propagation_timeout`.
    pub async fn wait_visible(&self, name: &str, value: &str) -> Result<(), Error> {
        let limit = self.config.propagation_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let mut waiting = self.config.servers_to_check();
        if self.config.check_ns {
            for ns in self.name_servers().await? {
                if !waiting.contains(&ns) {
                    waiting.push(ns);
                }
            }
        }
        let mut last_problem = None;
        loop {
            let mut still = Vec::new();
            for server in waiting {
                match self.is_visible(server, name, value).await {
                    Ok(true) => {}
                    Ok(false) => still.push(server),
                    Err(e) => {
                        last_problem = Some(e.to_string());
                        still.push(server);
                    }
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let servers: Vec<String> = still.iter().map(ToString::to_string).collect();
                let last = last_problem.map_or_else(String::new, |p| format!(" (last error: {p})"));
                return Err(Error::Dns {
                    server: still[0],
                    problem: format!(
                        "TXT {name} not served by {} after {limit:?}{last}",
                        servers.join(", ")
                    ),
                });
            }
            waiting = still;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// Reads the server's answer to an UPDATE: its code, then (on success)
/// its TSIG signature, so a forged success is not believed.
pub(crate) fn check_update_answer(
    answer: &[u8],
    id: u16,
    key: &str,
    verifier: &mut hickory_proto::op::MessageVerifier,
) -> Result<(), String> {
    let message = Message::from_vec(answer).map_err(|e| format!("unreadable answer: {e}"))?;
    if message.id() != id || message.message_type() != MessageType::Response {
        return Err("the answer is not a response to the update".into());
    }
    match message.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NotAuth => {
            return Err(format!(
                "NOTAUTH: the server refused the TSIG signature of key {key:?} \
                 (wrong secret, key name or algorithm, or clocks more than 5 minutes apart)"
            ));
        }
        ResponseCode::Refused => {
            return Err(format!(
                "REFUSED: the server does not allow key {key:?} to update this zone"
            ));
        }
        ResponseCode::NotZone => {
            return Err("NOTZONE: the name is not in the zone the server serves".into());
        }
        code => return Err(format!("the server answered {code}")),
    }
    verifier(answer).map_err(|e| format!("the answer's TSIG signature does not verify: {e}"))?;
    Ok(())
}

fn query(name: &str, rtype: RecordType) -> Result<Message, String> {
    let mut owner = Name::from_ascii(name).map_err(|e| format!("{name:?}: {e}"))?;
    owner.set_fqdn(true);
    let mut message = Message::new();
    message
        .set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false)
        .add_query(Query::query(owner, rtype));
    Ok(message)
}

/// The answer records of the response to the query `id` (none for a name
/// that does not exist).
pub(crate) fn read_answer(answer: &[u8], id: u16) -> Result<Vec<Record>, String> {
    let message = Message::from_vec(answer).map_err(|e| format!("unreadable answer: {e}"))?;
    if message.id() != id || message.message_type() != MessageType::Response {
        return Err("the answer is not a response to the query".into());
    }
    match message.response_code() {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        code => return Err(format!("the server answered {code}")),
    }
    Ok(message.answers().to_vec())
}

/// One DNS exchange over TCP (2-byte length prefix, RFC 1035 §4.2.2).
async fn tcp_exchange(server: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let len =
        u16::try_from(request.len()).map_err(|_| std::io::Error::other("request over 64 KiB"))?;
    let mut stream = tokio::net::TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await?;
    Ok(answer)
}

/// One DNS exchange over UDP, from an ephemeral loopback or any port.
async fn udp_exchange(server: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(request).await?;
    let mut buf = vec![0u8; 4096];
    let n = socket.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
#[path = "dns01_tests.rs"]
mod tests;
