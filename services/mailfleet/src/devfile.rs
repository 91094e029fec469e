//! `~/.config/mailfleet/dev.toml`: the endpoint and credentials of the local
//! dev stack, written by `mailfleet dev` so the admin CLI in another terminal
//! works without flags. The tokens are generated once and kept, so a restarted
//! stack keeps the same credentials.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DevFile {
    pub mailstore_url: String,
    pub service_token: String,
    pub admin_token: String,
}

/// Where the file lives (`$XDG_CONFIG_HOME/mailfleet/dev.toml` on Linux).
pub fn path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("mailfleet").join("dev.toml"))
}

/// A fresh random credential: 32 bytes, hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl DevFile {
    /// Reads the file; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> anyhow::Result<Option<DevFile>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        let get = |key: &str| {
            table
                .get(key)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Some(DevFile {
            mailstore_url: get("mailstore_url"),
            service_token: get("service_token"),
            admin_token: get("admin_token"),
        }))
    }

    /// Reads the file at the default place, if there is one.
    pub fn load_default() -> Option<DevFile> {
        path().and_then(|p| Self::load(&p).ok().flatten())
    }

    /// Writes the file readable by its owner only, replacing it atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let text = format!(
            "# Written by `mailfleet dev`: the local stack's endpoint and credentials.\n\
             mailstore_url = {}\nservice_token = {}\nadmin_token = {}\n",
            quote(&self.mailstore_url),
            quote(&self.service_token),
            quote(&self.admin_token)
        );
        let tmp = path.with_extension("toml.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trip_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("dev.toml");
        assert_eq!(DevFile::load(&path).unwrap(), None);
        let f = DevFile {
            mailstore_url: "http://127.0.0.1:50051".into(),
            service_token: random_token(),
            admin_token: "odd \"token\" \\".into(),
        };
        assert_eq!(f.service_token.len(), 64);
        f.save(&path).unwrap();
        assert_eq!(DevFile::load(&path).unwrap(), Some(f));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
