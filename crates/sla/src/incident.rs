//! How consecutive bad windows become an incident: the first bad window
//! opens one, each further bad window updates it, and the first window that
//! is not bad (good, without traffic, or in maintenance) resolves it.

/// What a window does to the incident of its contract (or pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentStep {
    Open,
    Update,
    Resolve,
    Nothing,
}

/// The step for the next window, given whether an incident is open.
pub fn next_step(incident_open: bool, window_bad: bool) -> IncidentStep {
    match (incident_open, window_bad) {
        (false, true) => IncidentStep::Open,
        (true, true) => IncidentStep::Update,
        (true, false) => IncidentStep::Resolve,
        (false, false) => IncidentStep::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_bad_windows_is_one_incident() {
        let windows = [false, true, true, true, false, false, true, false];
        let mut open = false;
        let mut steps = Vec::new();
        for bad in windows {
            let step = next_step(open, bad);
            open = matches!(step, IncidentStep::Open | IncidentStep::Update);
            steps.push(step);
        }
        use IncidentStep::*;
        assert_eq!(steps, vec![Nothing, Open, Update, Update, Resolve, Nothing, Open, Resolve]);
    }
}
