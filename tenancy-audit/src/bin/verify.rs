//! `tenancy-audit-verify BUNDLE_DIR`: verifies an export bundle offline, with nothing but
//! its files. Prints the report; exits 0 when it verified, 1 when it did not, 2 when the
//! bundle could not be read.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!("usage: tenancy-audit-verify BUNDLE_DIR");
        return ExitCode::from(2);
    };
    match tenancy_audit::verify_bundle(&PathBuf::from(dir)) {
        Ok(report) => {
            println!("{report}");
            if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}
