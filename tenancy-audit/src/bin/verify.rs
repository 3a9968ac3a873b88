//! `tenancy-audit-verify BUNDLE_DIR [--key PUBLIC_KEY_HEX]`: verifies an export bundle
//! offline, with nothing but its files (and, with `--key`, the platform's Ed25519 public
//! key, to check the bundle's signed checkpoint). Prints the report; exits 0 when it
//! verified, 1 when it did not, 2 when the bundle or the key could not be read.

use std::path::PathBuf;
use std::process::ExitCode;

use tenancy_audit::ed25519_dalek::VerifyingKey;

const USAGE: &str = "usage: tenancy-audit-verify BUNDLE_DIR [--key PUBLIC_KEY_HEX]";

fn key(hex: &str) -> Option<VerifyingKey> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (n, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        key[n] = u8::from_str_radix(text, 16).ok()?;
    }
    VerifyingKey::from_bytes(&key).ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, key) = match args.as_slice() {
        [dir] => (dir, None),
        [dir, flag, hex] if flag == "--key" => match key(hex) {
            Some(key) => (dir, Some(key)),
            None => {
                eprintln!("--key must be an Ed25519 public key, 64 hexadecimal digits");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let dir = PathBuf::from(dir);
    let outcome = match &key {
        Some(key) => tenancy_audit::verify_bundle_signed(&dir, key),
        None => tenancy_audit::verify_bundle(&dir),
    };
    match outcome {
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
