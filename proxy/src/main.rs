//! The `tandem` binary: parses the command line and hands over to
//! [`tandem_proxy::cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tandem_proxy::cli::main()
}
