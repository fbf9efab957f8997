//! `--generate KIND`: man pages and shell completions made from the clap definitions
//! themselves (as ripgrep does), so what a package ships cannot drift from the binary.

use std::io::Write;

/// What `--generate` writes to standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// A roff man page (section 1).
    Man,
    /// bash completions.
    CompleteBash,
    /// zsh completions.
    CompleteZsh,
    /// fish completions.
    CompleteFish,
    /// PowerShell completions.
    CompletePowershell,
    /// elvish completions.
    CompleteElvish,
}

/// Writes `kind` for the command `cmd` (its name is the binary's).
pub fn write(kind: Generate, mut cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    use clap_complete::Shell;
    let shell = match kind {
        Generate::Man => return clap_mangen::Man::new(cmd).render(out),
        Generate::CompleteBash => Shell::Bash,
        Generate::CompleteZsh => Shell::Zsh,
        Generate::CompleteFish => Shell::Fish,
        Generate::CompletePowershell => Shell::PowerShell,
        Generate::CompleteElvish => Shell::Elvish,
    };
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
    Ok(())
}

/// Writes `kind` to standard output and returns the process result.
pub fn run(kind: Generate, cmd: clap::Command) -> anyhow::Result<std::process::ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    write(kind, cmd, &mut out)?;
    out.flush()?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> clap::Command {
        clap::Command::new("sample")
            .about("A sample")
            .subcommand(clap::Command::new("run").about("Runs it"))
    }

    #[test]
    fn man_page_names_the_command_and_its_subcommands() {
        let mut out = Vec::new();
        write(Generate::Man, sample(), &mut out).expect("render");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.starts_with(".ie") || text.contains(".TH sample"),
            "{text}"
        );
        assert!(text.contains("run"), "{text}");
    }

    #[test]
    fn every_shell_gets_completions_naming_the_subcommands() {
        for kind in [
            Generate::CompleteBash,
            Generate::CompleteZsh,
            Generate::CompleteFish,
            Generate::CompletePowershell,
            Generate::CompleteElvish,
        ] {
            let mut out = Vec::new();
            write(kind, sample(), &mut out).expect("render");
            let text = String::from_utf8(out).expect("utf-8");
            assert!(
                text.contains("sample") && text.contains("run"),
                "{kind:?}: {text}"
            );
        }
    }
}
