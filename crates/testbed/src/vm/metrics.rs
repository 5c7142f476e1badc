//! Reading a node_exporter textfile (`kpatch status --prometheus`) with node_exporter
//! itself: Debian's `prometheus-node-exporter` package is downloaded (not installed: it
//! would start a listener on every address), its binary runs with only the textfile
//! collector, bound to 127.0.0.1, and its `/metrics` page is what Prometheus would scrape.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::util::run;

/// The node_exporter binary from Debian's package, fetched into `tools` once.
pub fn node_exporter(tools: &Path) -> Result<PathBuf> {
    let dir = tools.join("node-exporter");
    let exe = dir.join("x/usr/bin/prometheus-node-exporter");
    if exe.exists() {
        return Ok(exe);
    }
    std::fs::create_dir_all(&dir).at(&dir)?;
    run(Command::new("apt-get").current_dir(&dir).args([
        "download",
        "-q",
        "prometheus-node-exporter",
    ]))?;
    for e in std::fs::read_dir(&dir).at(&dir)?.flatten() {
        if e.path().extension().is_some_and(|x| x == "deb") {
            debian::unpack::extract(&e.path(), &dir.join("x"), &[])
                .map_err(|e| crate::Error::Cache(e.to_string()))?;
        }
    }
    if !exe.exists() {
        return Err(Error::Cache(format!("{} is missing", exe.display())));
    }
    Ok(exe)
}

/// What node_exporter serves after reading the textfile directory holding `file` (which
/// must end in `.prom`): the `/metrics` text, with `node_textfile_scrape_error` telling
/// whether it could parse the file.
pub fn node_exporter_parse_with(tools: &Path, file: &Path) -> Result<String> {
    let exe = node_exporter(tools)?;
    let dir = file
        .parent()
        .ok_or_else(|| Error::Invalid(format!("{}: no directory", file.display())))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .at("127.0.0.1:0")?
        .port();
    let mut child = Command::new(&exe)
        .arg("--collector.disable-defaults")
        .arg("--collector.textfile")
        .arg(format!("--collector.textfile.directory={}", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            command: exe.display().to_string(),
            source,
        })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let result = loop {
        match get_metrics(port) {
            Ok(text) => break Ok(text),
            Err(e) if Instant::now() > deadline => break Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn get_metrics(port: u16) -> Result<String> {
    let addr = format!("127.0.0.1:{port}");
    let mut s = std::net::TcpStream::connect(&addr).at(&addr)?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .at(&addr)?;
    let mut text = String::new();
    s.read_to_string(&mut text).at(&addr)?;
    Ok(text)
}
