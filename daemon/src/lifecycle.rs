//! A guest's life as one state machine — created → running → (stopping →)
//! ended — which the registry records for `colinux list`, `colinux stop`
//! waits on, and whose end gives `colinux run` its exit status.

use serde::{Deserialize, Serialize};

use colinux_abi as abi;

/// Where a guest is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "is", rename_all = "kebab-case")]
pub enum State {
    /// Its RAM is allocated and its kernel loaded; not run yet.
    Created,
    /// Running.
    Running,
    /// A clean stop was asked for (its power button pressed); the guest
    /// is shutting down.
    Stopping,
    /// Over, for this reason.
    Ended(End),
}

/// How a guest ended, and the exit status `colinux run` gives for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    pub why: String,
    pub code: i32,
}

/// The exit status of a guest ended by `colinux kill` (as by SIGKILL).
pub const KILLED: i32 = 128 + 9;

impl End {
    /// The guest ended itself with TERMINATE `reason`.
    pub fn terminated(reason: u64) -> End {
        let r = u32::try_from(reason).unwrap_or(u32::MAX);
        let (why, code) = match r {
            abi::COOPERATIVE_TERM_END => ("ended", 0),
            abi::COOPERATIVE_TERM_POWEROFF => ("powered off", 0),
            abi::COOPERATIVE_TERM_HALT => ("halted", 0),
            abi::COOPERATIVE_TERM_REBOOT => ("rebooted", 0),
            abi::COOPERATIVE_TERM_PANIC => ("panicked", 2),
            abi::COOPERATIVE_TERM_BUG => ("BUG", 2),
            abi::COOPERATIVE_TERM_FORCED_OFF => ("forced off", 2),
            abi::COOPERATIVE_TERM_FORCED_END => ("ended by the host", 2),
            abi::COOPERATIVE_TERM_INVALID_OPERATION => ("made an invalid operation", 2),
            abi::COOPERATIVE_TERM_STACK_OVERFLOW => ("overflowed its stack", 2),
            abi::COOPERATIVE_TERM_VMXE => ("stopped: the host CPU has VMX on", 2),
            _ => {
                return End {
                    why: format!("terminated (reason {reason})"),
                    code: 2,
                }
            }
        };
        End {
            why: why.into(),
            code,
        }
    }

    /// A fault the guest could not handle.
    pub fn fault(what: String) -> End {
        End { why: what, code: 3 }
    }

    /// Ended by `colinux kill`.
    pub fn killed() -> End {
        End {
            why: "ended by colinux kill".into(),
            code: KILLED,
        }
    }

    /// Ended on signal `sig`.
    pub fn signal(sig: i32) -> End {
        End {
            why: format!("ended on signal {sig}"),
            code: 128 + sig,
        }
    }

    /// Ended because the console's user asked (`why`).
    pub fn asked(why: &str) -> End {
        End {
            why: why.into(),
            code: 0,
        }
    }
}

impl State {
    /// The word `colinux list` shows.
    pub fn word(&self) -> &str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Ended(_) => "ended",
        }
    }

    /// Move to `to`, if the machine allows it: created → running or
    /// ended; running → stopping or ended; stopping → ended; ended is
    /// final. Returns whether it moved.
    pub fn advance(&mut self, to: State) -> bool {
        let ok = matches!(
            (&*self, &to),
            (State::Created, State::Running | State::Ended(_))
                | (State::Running, State::Stopping | State::Ended(_))
                | (State::Stopping, State::Ended(_))
        );
        if ok {
            *self = to;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_moves_forward_only() {
        let mut s = State::Created;
        assert!(!s.advance(State::Stopping));
        assert!(s.advance(State::Running));
        assert!(!s.advance(State::Created));
        assert!(s.advance(State::Stopping));
        assert!(!s.advance(State::Running));
        assert!(s.advance(State::Ended(End::terminated(
            abi::COOPERATIVE_TERM_POWEROFF.into()
        ))));
        assert!(!s.advance(State::Running));
        assert_eq!(
            s,
            State::Ended(End {
                why: "powered off".into(),
                code: 0
            })
        );
    }

    #[test]
    fn ends_and_their_exit_codes() {
        assert_eq!(
            End::terminated(abi::COOPERATIVE_TERM_POWEROFF.into()).code,
            0
        );
        assert_eq!(End::terminated(abi::COOPERATIVE_TERM_END.into()).code, 0);
        assert_eq!(
            End::terminated(abi::COOPERATIVE_TERM_PANIC.into()).why,
            "panicked"
        );
        assert_eq!(End::terminated(abi::COOPERATIVE_TERM_PANIC.into()).code, 2);
        assert_eq!(End::terminated(abi::COOPERATIVE_TERM_BUG.into()).code, 2);
        assert_eq!(End::terminated(99).code, 2);
        assert_eq!(End::terminated(u64::MAX).code, 2);
        assert_eq!(End::killed().code, 137);
        assert_eq!(End::signal(15).code, 143);
        assert_eq!(End::fault("x".into()).code, 3);
    }

    #[test]
    fn states_round_trip_through_toml() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct R {
            state: State,
        }
        for state in [State::Running, State::Ended(End::killed())] {
            let r = R { state };
            let text = toml::to_string(&r).expect("serialise");
            assert_eq!(toml::from_str::<R>(&text).expect("parse"), r);
        }
    }
}
