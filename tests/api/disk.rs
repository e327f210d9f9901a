//! Spool disk faults that heal: a disk that fills then frees, a device whose write-back fails
//! then works again. The relay answers 503 for spool sources while the disk fails, keeps
//! serving its memory- and broker-mode sources, and uses the disk again by itself.
//!
//! These tests mount real filesystems (a small tmpfs; ext2 on a loop device), so they need root
//! and the `mount`, `losetup` and `mkfs.ext2` commands; they fail with a message saying so.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use hookrelay::settings::{AckMode, AuthSettings, NoAuthSettings, SourceSettings};

use crate::helpers::{broker, read_topic, spawn_from_config, Options, TestApp, TestConfig};

fn run(command: &str, args: &[&str]) -> String {
    let output = Command::new(command).args(args).output().unwrap_or_else(|error| {
        panic!("cannot run {command} ({error}): the disk-fault tests need root and util-linux/e2fsprogs (mount, losetup, mkfs.ext2)")
    });
    assert!(
        output.status.success(),
        "{command} {args:?} failed: {} (the disk-fault tests need root: run scripts/test as root, as CI does)",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let size = format!("size={bytes}");
        run(
            "mount",
            &["-t", "tmpfs", "-o", &size, "tmpfs", mount.to_str().unwrap()],
        );
        Tmpfs { mount, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// ext2 on a loop device whose sparse image lives on a small tmpfs: when that tmpfs is full,
/// the device refuses write-back, so `fdatasync` fails although `write` succeeded (the class
/// of EIO: data in the page cache that never reaches the disk).
struct LoopDisk {
    mount: PathBuf,
    device: String,
    backing: Tmpfs,
}

impl LoopDisk {
    fn mount() -> LoopDisk {
        let backing = Tmpfs::mount(12 * 1024 * 1024);
        let image = backing.mount.join("image");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(64 * 1024 * 1024)
            .unwrap();
        let device = run("losetup", &["-f", "--show", image.to_str().unwrap()]);
        run("mkfs.ext2", &["-q", &device]);
        let mount = backing._dir.path().join("ext2");
        std::fs::create_dir(&mount).unwrap();
        run(
            "mount",
            &["-o", "errors=continue", &device, mount.to_str().unwrap()],
        );
        LoopDisk {
            mount,
            device,
            backing,
        }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// Fills the filesystem of `dir` with a file until it is full; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let mut byte = [0x5au8];
    while file.write_all(&byte).is_ok() {
        byte[0] ^= 1;
    }
    path
}

/// A relay whose spool is in `spool_dir`, with the TagMango source on the spool and a second
/// source, `fast`, in memory mode.
async fn relay_with_spool_in(spool_dir: &Path) -> TestApp {
    let mut config = TestConfig::new(&Options {
        ack: AckMode::Spool,
        ..Options::default()
    });
    config.settings.delivery.spool_dir = spool_dir.to_owned();
    let mut fast = SourceSettings::new(AuthSettings::None(NoAuthSettings {}));
    fast.topic = format!("{}.fast", config.prefix);
    fast.ack = Some(AckMode::Memory);
    config.settings.sources.insert("fast".to_owned(), fast);
    spawn_from_config(config).await
}

/// A 40 KB course body no other call posts.
fn big_body(n: usize) -> Vec<u8> {
    format!(
        "{{\"email\":\"d{n}@example.com\",\"courseId\":\"c\",\"lastProgressOn\":\"{n}\",\"pad\":\"{}\"}}",
        "x".repeat(40_000)
    )
    .into_bytes()
}

/// Posts distinct spooled events until one is refused; returns the ids accepted and the refusal.
async fn post_until_refused(app: &TestApp, from: usize) -> (Vec<String>, reqwest::Response) {
    let url = app.hook_url("course.completed.50");
    let mut accepted = Vec::new();
    for n in from..from + 2_000 {
        let response = app.post_json(&url, big_body(n)).await;
        if response.status().as_u16() != 200 {
            return (accepted, response);
        }
        let answer: Value = response.json().await.unwrap();
        accepted.push(answer["id"].as_str().unwrap().to_owned());
    }
    panic!("the spool never refused: the disk did not fill");
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app.admin_get("/readyz").await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Waits until `/readyz` names no spool failure, without posting to the spool source.
async fn wait_until_healed(app: &TestApp) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = readyz(app).await;
        if status == 200 && body.get("degraded").is_none() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the spool did not heal by itself: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_healed_and_delivered(app: &TestApp, mut accepted: Vec<String>, from: usize) {
    let healed_in = wait_until_healed(app).await;
    println!("the spool healed {healed_in:?} after the disk was freed");
    let url = app.hook_url("course.completed.50");
    let response = app.post_json(&url, big_body(from)).await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "accepted again after the disk healed"
    );
    let answer: Value = response.json().await.unwrap();
    accepted.push(answer["id"].as_str().unwrap().to_owned());

    let topic = app.config.topic("course.completed.50");
    let expected: HashSet<String> = accepted.into_iter().collect();
    let count = expected.len();
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&topic, count + 10, Duration::from_secs(10))
    })
    .await
    .unwrap();
    let seen: HashSet<String> = records
        .iter()
        .filter_map(|record| record.header("ce_id").map(str::to_owned))
        .collect();
    let missing: Vec<&String> = expected.difference(&seen).collect();
    assert!(missing.is_empty(), "accepted but not in Kafka: {missing:?}");
}

/// While the spool fails: its source answers 503 spool_unavailable with Retry-After, the
/// memory-mode source still answers 200, and /readyz stays 200 naming the spool as degraded.
async fn assert_failing_but_serving(app: &TestApp, refusal: reqwest::Response) {
    assert_eq!(refusal.status().as_u16(), 503);
    assert!(refusal.headers().get("retry-after").is_some());
    let problem: Value = refusal.json().await.unwrap();
    assert_eq!(problem["code"], "spool_unavailable", "{problem}");
    let fast = format!("{}/hooks/fast", app.address);
    let response = app.post_json(&fast, b"{\"n\":1}".to_vec()).await;
    assert_eq!(response.status().as_u16(), 200, "memory-mode sources go on");
    let (status, body) = readyz(app).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["degraded"][0].as_str().unwrap().contains("spool"),
        "{body}"
    );
}

/// Posts to a relay whose spool is in `spool_dir`, fills the filesystem of `fill_dir` until the
/// spool fails, checks what holds meanwhile, frees it, and checks that the relay heals by itself
/// and that every event it accepted is in Kafka.
async fn fill_fail_free_and_heal(spool_dir: &Path, fill_dir: &Path) {
    let app = relay_with_spool_in(spool_dir).await;
    let response = app
        .post_json(&app.hook_url("course.completed.50"), big_body(0))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let mut accepted = vec![response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()];

    let filler = fill(fill_dir);
    let (more, refusal) = post_until_refused(&app, 1).await;
    accepted.extend(more);
    assert_failing_but_serving(&app, refusal).await;

    std::fs::remove_file(filler).unwrap();
    assert_healed_and_delivered(&app, accepted, 5_000).await;
}

#[tokio::test]
async fn a_spool_disk_that_fills_and_is_freed_heals_without_a_restart() {
    let _ = broker();
    let disk = Tmpfs::mount(6 * 1024 * 1024);
    fill_fail_free_and_heal(&disk.mount.join("spool"), &disk.mount).await;
}

#[tokio::test]
async fn a_device_whose_flush_fails_then_works_again_heals_without_a_restart() {
    let _ = broker();
    let disk = LoopDisk::mount();
    // The loop device's backing store fills: the ext2 filesystem has room, so writes succeed
    // and their flush (write-back to the device) fails.
    fill_fail_free_and_heal(&disk.mount.join("spool"), &disk.backing.mount).await;
}
