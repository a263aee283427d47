//! Failpoints: named places right before or after each state-changing call where a test build
//! can make the function stop with an error, to prove that a retry with the same token converges.
//!
//! They only fire in builds with the `failpoints` cargo feature (off by default): without it
//! [`Failpoints::hit`] is an inlined `Ok(())` and no release build can be made to stop.
//!
//! | name | where the step stops |
//! |---|---|
//! | `after-put-secret-value` | createSecret, right after PutSecretValue stored the pending version |
//! | `after-set-password` | setSecret, right after the database accepted the new password (ALTER ROLE, or CREATE ROLE of a new clone) |
//! | `after-create-clone` | setSecret (alternating users), right after the transaction that created `<user>_clone` committed |
//! | `before-update-stage` | finishSecret, right before UpdateSecretVersionStage |
//! | `after-update-stage` | finishSecret, right after UpdateSecretVersionStage moved `AWSCURRENT` |
//!
//! A failpoint is armed by `ROTATION_FAILPOINT=<name>` at start or by [`Failpoints::arm`], and
//! fires **once**: the next invocation in the same process runs through, which is what a retry
//! by the service looks like.

use crate::error::Error;
use std::str::FromStr;

/// A place where a test build can stop. See the module docs for what each means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failpoint {
    /// `after-put-secret-value`.
    AfterPutSecretValue,
    /// `after-set-password`.
    AfterSetPassword,
    /// `after-create-clone`.
    AfterCreateClone,
    /// `before-update-stage`.
    BeforeUpdateStage,
    /// `after-update-stage`.
    AfterUpdateStage,
}

impl Failpoint {
    /// Every failpoint, in the order a rotation passes them.
    pub const ALL: [Failpoint; 5] = [
        Self::AfterPutSecretValue,
        Self::AfterCreateClone,
        Self::AfterSetPassword,
        Self::BeforeUpdateStage,
        Self::AfterUpdateStage,
    ];

    /// For error messages.
    pub const EXPECTED: &'static str =
        "after-put-secret-value, after-set-password, after-create-clone, before-update-stage or after-update-stage";

    /// The stable name used in `ROTATION_FAILPOINT`.
    pub fn name(self) -> &'static str {
        match self {
            Self::AfterPutSecretValue => "after-put-secret-value",
            Self::AfterSetPassword => "after-set-password",
            Self::AfterCreateClone => "after-create-clone",
            Self::BeforeUpdateStage => "before-update-stage",
            Self::AfterUpdateStage => "after-update-stage",
        }
    }
}

impl FromStr for Failpoint {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|f| f.name() == s.trim()).ok_or(())
    }
}

/// The armed failpoint of one function instance.
#[derive(Debug, Default)]
pub struct Failpoints {
    #[cfg(feature = "failpoints")]
    armed: std::sync::Mutex<Option<Failpoint>>,
}

impl Failpoints {
    /// Failpoints with `initial` armed. Without the `failpoints` feature, an armed failpoint is
    /// ignored with a warning.
    pub fn new(initial: Option<Failpoint>) -> Self {
        let points = Self::default();
        #[cfg(feature = "failpoints")]
        points.arm(initial);
        #[cfg(not(feature = "failpoints"))]
        if let Some(f) = initial {
            tracing::warn!(
                failpoint = f.name(),
                "ROTATION_FAILPOINT is set but this build has no failpoints; ignored"
            );
        }
        points
    }

    /// Arms `point` (or disarms with `None`), replacing whatever was armed.
    #[cfg(feature = "failpoints")]
    pub fn arm(&self, point: Option<Failpoint>) {
        *self.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = point;
    }

    /// Stops here if `point` is armed, disarming it.
    ///
    /// # Errors
    /// [`Error::Failpoint`] when `point` was armed.
    #[cfg(feature = "failpoints")]
    pub fn hit(&self, point: Failpoint) -> Result<(), Error> {
        let mut armed = self.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *armed == Some(point) {
            *armed = None;
            tracing::warn!(failpoint = point.name(), "stopping at failpoint");
            return Err(Error::Failpoint { name: point.name() });
        }
        Ok(())
    }

    /// Without the `failpoints` feature, never stops.
    ///
    /// # Errors
    /// Never.
    #[cfg(not(feature = "failpoints"))]
    #[inline(always)]
    pub fn hit(&self, _point: Failpoint) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_parse_back() {
        let names: Vec<&str> = Failpoint::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "after-put-secret-value",
                "after-create-clone",
                "after-set-password",
                "before-update-stage",
                "after-update-stage"
            ]
        );
        for f in Failpoint::ALL {
            assert_eq!(f.name().parse(), Ok(f));
            assert!(Failpoint::EXPECTED.contains(f.name()));
        }
        assert!("after-everything".parse::<Failpoint>().is_err());
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn an_armed_failpoint_fires_once() {
        let points = Failpoints::new(Some(Failpoint::AfterSetPassword));
        assert!(points.hit(Failpoint::AfterPutSecretValue).is_ok());
        let err = points.hit(Failpoint::AfterSetPassword).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Failpoint {
                    name: "after-set-password"
                }
            ),
            "{err:?}"
        );
        assert!(points.hit(Failpoint::AfterSetPassword).is_ok());
    }

    /// What "no failpoints in shipped builds" rests on. Compiled only without the feature, which
    /// `cargo test --workspace` turns on for every rotation build (the e2e tests' dev-dependency
    /// asks for it), so `make test` runs it in a step of its own: `cargo test -p rotation --lib`.
    #[cfg(not(feature = "failpoints"))]
    #[test]
    fn without_the_feature_nothing_fires() {
        for armed in Failpoint::ALL {
            let points = Failpoints::new(Some(armed));
            for point in Failpoint::ALL {
                assert!(
                    points.hit(point).is_ok(),
                    "{} fired with {} armed",
                    point.name(),
                    armed.name()
                );
            }
        }
    }
}
