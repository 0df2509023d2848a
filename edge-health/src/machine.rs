//! The per-target rise/fall state machine. No I/O, no clock: the caller
//! passes `now` with every input and asks when the next probe is due.
//!
//! HAProxy's model: a health counter runs from 0 to `rise + fall - 1`. A
//! target is up while the counter is at least `rise`. While up, a pass
//! restores the counter to its ceiling and a failure lowers it by one, so an
//! up target goes down after exactly `fall` failures in a row. While down, a
//! failure resets the counter to 0 and a pass raises it by one, so a down
//! target comes back after exactly `rise` passes in a row.
//!
//! Intervals: `inter` while stable, `fastinter` while changing state and
//! before the first result, `downinter` while fully down.
//!
//! Outlier ejection is an overlay: an ejected target is out of rotation for
//! the ejection time, and after that it returns only through a passing probe.

use std::time::{Duration, Instant};

use crate::config::{CheckConfig, InitialState};
use crate::reason::Reason;

/// Where a target stands, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetState {
    /// No result yet and not assumed up: out of rotation.
    Unchecked,
    /// In rotation.
    Up,
    /// Out of rotation by active checks.
    Down,
    /// Out of rotation by passive outlier detection.
    Ejected,
}

impl TargetState {
    /// Whether traffic may go to the target.
    pub fn is_healthy(self) -> bool {
        matches!(self, TargetState::Up)
    }
}

/// A change of [`TargetState`], produced by the machine at most once per input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: TargetState,
    /// The state now.
    pub to: TargetState,
    /// Why.
    pub reason: Reason,
    /// When (the `now` of the input that caused it).
    pub at: Instant,
}

/// The rise/fall state machine of one target.
#[derive(Debug, Clone)]
pub struct HealthMachine {
    cfg: CheckConfig,
    /// 0 ..= rise + fall - 1; up when >= rise.
    health: u32,
    state: TargetState,
    reason: Reason,
    since: Instant,
    /// Whether any result has arrived.
    checked: bool,
    /// Set while ejected: the earliest time a passing probe may return it.
    ejected_until: Option<Instant>,
    ejections: u32,
    returned_at: Option<Instant>,
    next_probe: Instant,
    probe_started: Option<Instant>,
}

impl HealthMachine {
    /// A machine for a validated config; the first probe is due at `now`.
    pub fn new(cfg: CheckConfig, now: Instant) -> Self {
        let (health, state) = match cfg.initial {
            InitialState::DownUntilFirstPass => (0, TargetState::Unchecked),
            InitialState::AssumedUp => (ceiling(&cfg), TargetState::Up),
            InitialState::AssumedDown => (0, TargetState::Down),
        };
        Self {
            cfg,
            health,
            state,
            reason: Reason::NotChecked,
            since: now,
            checked: false,
            ejected_until: None,
            ejections: 0,
            returned_at: None,
            next_probe: now,
            probe_started: None,
        }
    }

    /// The published state.
    pub fn state(&self) -> TargetState {
        self.state
    }

    /// Whether traffic may go to the target.
    pub fn is_healthy(&self) -> bool {
        self.state.is_healthy()
    }

    /// The reason of the last state change.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// When the state last changed.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// The health counter (0 ..= rise + fall - 1).
    pub fn health(&self) -> u32 {
        self.health
    }

    /// Whether a probe result has arrived (the first one decides a target
    /// that started [`InitialState::DownUntilFirstPass`]).
    pub fn has_result(&self) -> bool {
        self.checked
    }

    /// When the next probe is due (unless one is in flight).
    pub fn poll_timeout(&self) -> Instant {
        self.next_probe
    }

    /// Whether a probe is in flight.
    pub fn probing(&self) -> bool {
        self.probe_started.is_some()
    }

    /// The interval the machine is in now: `fastinter` while changing state,
    /// ejected or unchecked, `downinter` while fully down, else `inter`.
    pub fn interval(&self) -> Duration {
        let top = ceiling(&self.cfg);
        match self.state {
            TargetState::Unchecked | TargetState::Ejected => self.cfg.effective_fastinter(),
            TargetState::Up if self.health < top => self.cfg.effective_fastinter(),
            TargetState::Up => self.cfg.inter,
            TargetState::Down if self.health == 0 => self.cfg.effective_downinter(),
            TargetState::Down => self.cfg.effective_fastinter(),
        }
    }

    /// Moves the next probe time (the scheduler's spread of second probes).
    pub fn delay_next_probe(&mut self, at: Instant) {
        self.next_probe = at;
    }

    /// A probe starts now.
    pub fn on_probe_started(&mut self, now: Instant) {
        self.probe_started = Some(now);
    }

    /// A probe finished at `now` with `result`. Schedules the next probe one
    /// interval after the start of this one (at once if it overran) and
    /// returns the state change, if any.
    pub fn on_probe_result(
        &mut self,
        now: Instant,
        result: Result<(), Reason>,
    ) -> Option<Transition> {
        let started = self.probe_started.take().unwrap_or(now);
        let first = !self.checked;
        self.checked = true;
        let top = ceiling(&self.cfg);
        let active_up_before = self.active_up();
        let pass = result.is_ok();
        if first && self.cfg.initial == InitialState::DownUntilFirstPass {
            self.health = if pass { top } else { 0 };
        } else if active_up_before {
            self.health = if pass {
                top
            } else {
                self.health.saturating_sub(1)
            };
            if !pass && self.health < self.cfg.rise {
                // Fully down from now on.
                self.health = 0;
            }
        } else if pass {
            self.health = self.health.saturating_add(1);
            if self.health >= self.cfg.rise {
                self.health = top;
            }
        } else {
            self.health = 0;
        }
        let reason = match result {
            Ok(()) => Reason::Passed,
            Err(r) => r,
        };
        let new_state = match self.ejected_until {
            Some(until) if self.active_up() && !(pass && now >= until) => TargetState::Ejected,
            _ => {
                if self.ejected_until.is_some() {
                    // Returned by a passing probe, or active checks took over.
                    self.ejected_until = None;
                    self.returned_at = Some(now);
                }
                if self.active_up() {
                    TargetState::Up
                } else {
                    TargetState::Down
                }
            }
        };
        let t = self.set_state(new_state, reason, now);
        let next = started.checked_add(self.interval()).unwrap_or(now);
        self.next_probe = next.max(now);
        if let Some(until) = self.ejected_until {
            // Ask for the returning probe as soon as the ejection ends.
            if until > now && until < self.next_probe {
                self.next_probe = until;
            }
        }
        t
    }

    /// Ejects the target until `until` (passive outlier detection). Probes go
    /// on at `fastinter`; the first passing probe at or after `until` returns
    /// it. Returns the transition, or `None` if the target was not in
    /// rotation.
    pub fn eject(&mut self, now: Instant, until: Instant, reason: Reason) -> Option<Transition> {
        if self.state != TargetState::Up {
            return None;
        }
        self.ejected_until = Some(until);
        self.ejections = self.ejections.saturating_add(1);
        self.set_state(TargetState::Ejected, reason, now)
    }

    /// Times ejected so far.
    pub fn ejections(&self) -> u32 {
        self.ejections
    }

    /// When the target last returned from an ejection.
    pub fn returned_at(&self) -> Option<Instant> {
        self.returned_at
    }

    fn active_up(&self) -> bool {
        self.health >= self.cfg.rise
    }

    fn set_state(&mut self, to: TargetState, reason: Reason, now: Instant) -> Option<Transition> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        self.reason = reason.clone();
        self.since = now;
        Some(Transition {
            from,
            to,
            reason,
            at: now,
        })
    }
}

fn ceiling(cfg: &CheckConfig) -> u32 {
    cfg.rise.saturating_add(cfg.fall).saturating_sub(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn cfg() -> CheckConfig {
        CheckConfig::default()
            .inter(2 * S)
            .fastinter(S / 2)
            .downinter(5 * S)
            .rise(2)
            .fall(3)
    }

    /// Runs one probe at the machine's due time and returns the transition.
    fn step(m: &mut HealthMachine, r: Result<(), Reason>) -> Option<Transition> {
        let now = m.poll_timeout();
        m.on_probe_started(now);
        m.on_probe_result(now, r)
    }

    #[test]
    fn first_pass_brings_unchecked_target_up() {
        let t0 = Instant::now();
        let mut m = HealthMachine::new(cfg(), t0);
        assert_eq!(m.state(), TargetState::Unchecked);
        assert_eq!(m.interval(), S / 2, "fastinter before first result");
        let t = step(&mut m, Ok(())).unwrap();
        assert_eq!((t.from, t.to), (TargetState::Unchecked, TargetState::Up));
        assert_eq!(m.interval(), 2 * S);
    }

    #[test]
    fn first_failure_marks_down_and_rise_passes_bring_it_back() {
        let mut m = HealthMachine::new(cfg(), Instant::now());
        let t = step(&mut m, Err(Reason::Refused)).unwrap();
        assert_eq!(t.to, TargetState::Down);
        assert_eq!(t.reason, Reason::Refused);
        assert_eq!(m.interval(), 5 * S, "downinter while fully down");
        assert!(step(&mut m, Ok(())).is_none());
        assert_eq!(m.interval(), S / 2, "fastinter while rising");
        let t = step(&mut m, Ok(())).unwrap();
        assert_eq!(t.to, TargetState::Up);
    }

    #[test]
    fn exactly_fall_failures_take_it_down() {
        for fall in 1..6 {
            let mut m = HealthMachine::new(cfg().fall(fall), Instant::now());
            step(&mut m, Ok(()));
            for i in 1..fall {
                assert!(step(&mut m, Err(Reason::Timeout)).is_none(), "fail {i}");
                assert_eq!(m.interval(), S / 2);
            }
            let t = step(&mut m, Err(Reason::Status(503))).unwrap();
            assert_eq!(t.to, TargetState::Down);
            assert_eq!(t.reason.to_string(), "status 503");
        }
    }

    #[test]
    fn a_pass_while_falling_restores_full_health() {
        let mut m = HealthMachine::new(cfg(), Instant::now());
        step(&mut m, Ok(()));
        step(&mut m, Err(Reason::Timeout));
        step(&mut m, Err(Reason::Timeout));
        step(&mut m, Ok(()));
        assert_eq!(m.interval(), 2 * S);
        step(&mut m, Err(Reason::Timeout));
        step(&mut m, Err(Reason::Timeout));
        assert!(m.is_healthy());
        assert!(step(&mut m, Err(Reason::Timeout)).is_some());
    }

    #[test]
    fn a_failure_while_rising_starts_over() {
        let mut m = HealthMachine::new(cfg().rise(3), Instant::now());
        step(&mut m, Err(Reason::Refused));
        step(&mut m, Ok(()));
        step(&mut m, Ok(()));
        step(&mut m, Err(Reason::Refused));
        assert!(step(&mut m, Ok(())).is_none());
        assert!(step(&mut m, Ok(())).is_none());
        assert!(step(&mut m, Ok(())).is_some());
    }

    #[test]
    fn assumed_up_needs_fall_failures() {
        let mut m = HealthMachine::new(cfg().initial(InitialState::AssumedUp), Instant::now());
        assert!(m.is_healthy());
        assert!(step(&mut m, Err(Reason::Reset)).is_none());
        assert!(step(&mut m, Err(Reason::Reset)).is_none());
        assert_eq!(
            step(&mut m, Err(Reason::Reset)).unwrap().to,
            TargetState::Down
        );
    }

    #[test]
    fn assumed_down_needs_rise_passes() {
        let mut m = HealthMachine::new(cfg().initial(InitialState::AssumedDown), Instant::now());
        assert!(!m.is_healthy());
        assert_eq!(m.state(), TargetState::Down);
        // The first pass does not bring it back (unlike DownUntilFirstPass).
        assert!(step(&mut m, Ok(())).is_none());
        assert_eq!(step(&mut m, Ok(())).unwrap().to, TargetState::Up);
    }

    #[test]
    fn next_probe_is_one_interval_after_start() {
        let t0 = Instant::now();
        let mut m = HealthMachine::new(cfg(), t0);
        m.on_probe_started(t0);
        m.on_probe_result(t0 + S / 10, Ok(()));
        assert_eq!(m.poll_timeout(), t0 + 2 * S);
        // A probe that overran its interval: next one at once.
        m.on_probe_started(t0 + 2 * S);
        m.on_probe_result(t0 + 5 * S, Ok(()));
        assert_eq!(m.poll_timeout(), t0 + 5 * S);
    }

    #[test]
    fn ejected_target_returns_only_through_a_passing_probe_after_the_ejection() {
        let t0 = Instant::now();
        let mut m = HealthMachine::new(cfg(), t0);
        step(&mut m, Ok(()));
        let until = t0 + 30 * S;
        let t = m
            .eject(
                t0 + S,
                until,
                Reason::Ejected {
                    consecutive_failures: 5,
                    duration: 29 * S,
                },
            )
            .unwrap();
        assert_eq!(t.to, TargetState::Ejected);
        assert_eq!(m.interval(), S / 2, "fastinter while ejected");
        // Probe before the end passes but the target stays out.
        m.on_probe_started(t0 + 10 * S);
        assert!(m.on_probe_result(t0 + 10 * S, Ok(())).is_none());
        assert_eq!(
            m.poll_timeout(),
            t0 + 10 * S + S / 2,
            "fastinter while ejected"
        );
        // The last probe before the end: the next one comes as it ends.
        m.on_probe_started(until - S / 4);
        assert!(m.on_probe_result(until - S / 4, Ok(())).is_none());
        assert_eq!(
            m.poll_timeout(),
            until,
            "returning probe as the ejection ends"
        );
        // At the end, a failing probe keeps it out.
        m.on_probe_started(until);
        assert!(m.on_probe_result(until, Err(Reason::Timeout)).is_none());
        assert_eq!(m.state(), TargetState::Ejected);
        // Then a pass brings it back.
        let t = step(&mut m, Ok(())).unwrap();
        assert_eq!((t.from, t.to), (TargetState::Ejected, TargetState::Up));
        assert_eq!(m.ejections(), 1);
    }

    #[test]
    fn ejected_target_failing_fall_probes_goes_down() {
        let t0 = Instant::now();
        let mut m = HealthMachine::new(cfg(), t0);
        step(&mut m, Ok(()));
        m.eject(t0, t0 + 30 * S, Reason::Refused);
        step(&mut m, Err(Reason::Refused));
        step(&mut m, Err(Reason::Refused));
        let t = step(&mut m, Err(Reason::Refused)).unwrap();
        assert_eq!(t.to, TargetState::Down);
        // Down targets are not ejected again.
        assert!(m.eject(t0, t0 + 30 * S, Reason::Refused).is_none());
    }
}
