//! The warning `edge check` prints (and a run logs) for a route whose host
//! no certificate covers: TLS clients asking for it would get a certificate
//! for another name and refuse it. A warning, not an error: the name may be
//! served on purpose by the default certificate (a test setup, say).

use super::{ConfigError, HostMatch, HostPattern, Validated, Validator, model};

impl Validator<'_> {
    /// One warning per `[[route]] host` no `[[certificate]]` name and no
    /// `[acme]` certificate name covers, when the HTTPS listener terminates
    /// TLS (it listens somewhere).
    pub(super) fn uncovered_route_hosts(
        &self,
        routes: &[model::Route],
        v: &Validated,
    ) -> Vec<ConfigError> {
        if v.https.listen.is_empty() {
            return Vec::new();
        }
        let served: Vec<HostMatch> = v
            .certificates
            .iter()
            .flat_map(|c| c.names.iter().copied())
            .chain(
                v.acme
                    .certificates
                    .iter()
                    .flatten()
                    .filter_map(|n| n.parse().ok()),
            )
            .collect();
        let mut warnings = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            for (j, h) in r.host.iter().enumerate() {
                let Ok(host) = h.get_ref().parse::<HostMatch>() else {
                    continue;
                };
                if served.iter().any(|s| s.covers(&host)) {
                    continue;
                }
                warnings.push(self.src.error(
                    h.span(),
                    format!("route[{i}].host[{j}]"),
                    uncovered_message(&host, &served),
                ));
            }
        }
        warnings
    }
}

/// Says which name is not covered and, when a wildcard is a level or more
/// above it, that a wildcard covers one label only.
fn uncovered_message(host: &HostMatch, served: &[HostMatch]) -> String {
    let mut msg = format!(
        "no [[certificate]] or [acme] certificate name covers {:?}; TLS clients asking for it get a certificate for another name",
        host.to_string()
    );
    let Some(name) = host.pattern().map(|p| p.name().as_str()) else {
        return msg;
    };
    let deeper = served
        .iter()
        .filter_map(HostMatch::pattern)
        .find(|s: &&HostPattern| {
            s.is_wildcard()
                && name
                    .strip_suffix(s.name().as_str())
                    .is_some_and(|below| below.len() > 1 && below.ends_with('.'))
        });
    if let Some(w) = deeper {
        msg.push_str(&format!(
            " ({:?} covers one label only, as in TLS)",
            w.to_string()
        ));
    }
    msg
}
