//! The terminal progress display: nodes waiting, provisioned and in the fleet.
//! Drawn on stderr only when it is a terminal, so logs and `--json` output stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::prove::FleetStatus;

/// A progress bar over the fleet (hidden when stderr is not a terminal).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `nodes` nodes.
    pub fn new(nodes: u64) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(nodes), ProgressDrawTarget::stderr());
        // The template is a constant known to be valid; fall back to the default if not.
        let style =
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} in fleet {msg}")
                .map(|style| style.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar }
    }

    /// Shows the latest counts.
    pub fn update(&self, status: &FleetStatus) {
        self.bar.set_position(status.in_fleet as u64);
        self.bar.set_message(format!(
            "(waiting {}, provisioned {})",
            status.waiting, status.provisioned
        ));
    }

    /// Leaves the final counts on screen.
    pub fn finish(&self, status: &FleetStatus) {
        self.update(status);
        self.bar.finish();
    }
}
