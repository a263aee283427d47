//! Sending signals to the servers the devstack started, by their own PID or process group.
//!
//! procps' `kill` reads `kill -TERM -1234` as the option `-1…` followed by garbage and signals
//! *every process on the machine* (`kill(-1, SIGTERM)`); only `kill -s TERM -- -1234` addresses a
//! group. Every signal goes through here, and PIDs 0 and 1 are refused outright.

use std::process::{Command, Stdio};

/// Sends `sig` (a name such as `TERM`, `STOP`) to process `pid`. Returns whether it was delivered.
pub fn process(pid: u32, sig: &str) -> bool {
    if pid <= 1 {
        return false;
    }
    send(sig, &pid.to_string())
}

/// Sends `sig` to every process in process group `pgid`. Returns whether it was delivered.
pub fn group(pgid: u32, sig: &str) -> bool {
    if pgid <= 1 {
        return false;
    }
    send(sig, &format!("-{pgid}"))
}

fn send(sig: &str, target: &str) -> bool {
    Command::new("kill")
        .args(["-s", sig, "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{os::unix::process::CommandExt, time::Duration};

    fn alive(child: &mut std::process::Child) -> bool {
        std::thread::sleep(Duration::from_millis(200));
        matches!(child.try_wait(), Ok(None))
    }

    #[test]
    fn group_signal_reaches_only_that_group() {
        let mut target = Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        let mut bystander = Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        assert!(group(target.id(), "TERM"));
        assert!(!alive(&mut target), "the target group got the signal");
        assert!(alive(&mut bystander), "another group did not");
        assert!(process(bystander.id(), "KILL"));
        assert!(!alive(&mut bystander));
    }

    #[test]
    fn init_and_everyone_are_refused() {
        for pid in [0, 1] {
            assert!(!process(pid, "TERM"));
            assert!(!group(pid, "TERM"));
        }
    }
}
