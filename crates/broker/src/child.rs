//! Child processes that cannot outlive their parent: the kernel sends them SIGTERM when
//! the thread that started them dies, however it dies (`kill -9` included).

use std::path::{Path, PathBuf};

use tokio::process::Command;

/// A command for `program` that the kernel stops (SIGTERM) when the calling thread dies.
///
/// It runs `program` through util-linux's `setpriv --pdeathsig TERM`, which sets the
/// parent-death signal and then `exec`s, so the child keeps `program`'s pid and name and
/// this crate needs no `unsafe` `pre_exec`. Start it from a thread that lives as long as
/// the child should (a runtime worker, not a short-lived blocking thread). Without
/// `setpriv` it is a plain command, and a warning says the child may outlive us.
pub fn dying_with_parent(program: &Path) -> Command {
    match setpriv() {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "TERM", "--"]).arg(program);
            command
        }
        None => {
            tracing::warn!(
                program = %program.display(),
                "setpriv (util-linux) not found: this child will outlive us if we are killed"
            );
            Command::new(program)
        }
    }
}

fn setpriv() -> Option<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/bin"), PathBuf::from("/bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|dir| dir.join("setpriv"))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_child_runs_the_program_with_its_arguments() {
        let out = dying_with_parent(Path::new("/bin/echo"))
            .arg("hello")
            .output()
            .await
            .expect("run echo");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    }
}
