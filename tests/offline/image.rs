//! The operator image `tools/build-image.sh` builds (with buildah, FROM SCRATCH) against the
//! Dockerfile's runtime stage: the same user, entrypoint, ports, labels and binary path, and a
//! layer that holds everything the binary needs to start (every library `ldd` names, the loader,
//! the CA bundle, a passwd entry for the user) and nothing the user could write.
//!
//! The archive is `OPERATOR_IMAGE_ARCHIVE` when set (tools/test-all.sh builds it once and sets
//! it, empty if that build failed); otherwise the test runs `tools/build-image.sh` itself (a
//! release build and buildah, as root or with buildah installed).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The crate version: the image's tag and version label, and the Dockerfile's `ARG VERSION`.
const VERSION: &str = env!("CARGO_PKG_VERSION");

// ---- the Dockerfile ----

/// What the Dockerfile's last stage (the image that ships) declares.
#[derive(Debug, Default)]
struct RuntimeStage {
    user: String,
    entrypoint: Vec<String>,
    /// `EXPOSE` ports as the image config names them (`8080/tcp`).
    exposed: BTreeSet<String>,
    /// `LABEL` key to its value as written (`${VERSION}` unexpanded).
    labels: BTreeMap<String, String>,
    /// `ARG` name to its default (empty without one).
    args: BTreeMap<String, String>,
    /// Where each `COPY` puts its files.
    copy_destinations: Vec<String>,
}

/// The Dockerfile's instructions: comments dropped, `\` continuations joined, as
/// `(INSTRUCTION, arguments)`.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        // Comment lines end nothing, also inside a continuation (as in Docker).
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let logical = std::mem::take(&mut pending);
                let (instruction, args) = logical
                    .split_once(char::is_whitespace)
                    .unwrap_or((&logical, ""));
                out.push((instruction.to_ascii_uppercase(), args.trim().to_string()));
            }
        }
    }
    out
}

/// Shell-like words: whitespace separates, double quotes group (a backslash escapes the next
/// character inside them) and are dropped. Enough for `LABEL`, `EXPOSE` and `COPY`.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => word.extend(chars.next()),
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(!quoted, "unbalanced quotes in {text:?}");
    if in_word {
        words.push(word);
    }
    words
}

fn runtime_stage(dockerfile: &str) -> RuntimeStage {
    let instructions = instructions(dockerfile);
    let last_from = instructions
        .iter()
        .rposition(|(i, _)| i == "FROM")
        .expect("the Dockerfile has a FROM");
    let mut stage = RuntimeStage::default();
    for (instruction, args) in &instructions[last_from + 1..] {
        match instruction.as_str() {
            "USER" => stage.user = args.clone(),
            "ENTRYPOINT" => {
                stage.entrypoint = serde_json::from_str(args).unwrap_or_else(|e| {
                    panic!("ENTRYPOINT {args} is not the exec (JSON) form: {e}")
                })
            }
            "EXPOSE" => {
                for port in words(args) {
                    let port = if port.contains('/') {
                        port
                    } else {
                        format!("{port}/tcp")
                    };
                    stage.exposed.insert(port);
                }
            }
            "LABEL" => {
                for pair in words(args) {
                    let (key, value) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("LABEL {pair}"));
                    stage.labels.insert(key.to_string(), value.to_string());
                }
            }
            "ARG" => {
                let (name, default) = args.split_once('=').unwrap_or((args, ""));
                stage
                    .args
                    .insert(name.to_string(), default.trim_matches('"').to_string());
            }
            "COPY" => {
                let words = words(args);
                let paths: Vec<_> = words.iter().filter(|w| !w.starts_with("--")).collect();
                assert!(paths.len() >= 2, "COPY {args}: no source and destination");
                stage.copy_destinations.push(paths[paths.len() - 1].clone());
            }
            _ => {}
        }
    }
    stage
}

/// The `ARG` a label value is, if it is exactly `${NAME}` or `$NAME`.
fn arg_reference(value: &str) -> Option<&str> {
    value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .or_else(|| value.strip_prefix('$'))
}

// ---- the docker-archive ----

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Other(tar::EntryType),
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
}

/// An image as `docker save` / `buildah commit docker-archive:` write it.
#[derive(Debug, Clone)]
struct Image {
    repo_tags: Vec<String>,
    /// The image config's `config` object: User, Entrypoint, ExposedPorts, Labels, Env.
    config: serde_json::Value,
    os: String,
    /// The root filesystem, every layer applied in order, by absolute path (`/etc/passwd`).
    files: BTreeMap<String, Entry>,
}

/// `/a/b/../c` → `/a/c`, and `./x/` → `/x`: paths as the image sees them.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Every entry of a tar stream by normalized path.
fn read_tar(bytes: &[u8]) -> BTreeMap<String, Entry> {
    let mut archive = tar::Archive::new(bytes);
    let mut files = BTreeMap::new();
    for entry in archive.entries().expect("a tar stream") {
        let mut entry = entry.expect("a tar entry");
        let path = normalize(&entry.path().expect("a path").to_string_lossy());
        let header = entry.header();
        let (mode, uid, gid) = (
            header.mode().expect("mode"),
            header.uid().expect("uid"),
            header.gid().expect("gid"),
        );
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).expect("entry data");
                Kind::File(data)
            }
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(
                entry
                    .link_name()
                    .expect("link name")
                    .expect("a symlink has a target")
                    .to_string_lossy()
                    .into_owned(),
            ),
            other => Kind::Other(other),
        };
        files.insert(
            path,
            Entry {
                kind,
                mode,
                uid,
                gid,
            },
        );
    }
    files
}

/// The file at `path` in `files`, following symlinks (relative to the link's directory, or
/// absolute within the same tree).
fn resolve<'a>(files: &'a BTreeMap<String, Entry>, path: &str) -> Option<&'a [u8]> {
    let mut path = normalize(path);
    for _ in 0..16 {
        match &files.get(&path)?.kind {
            Kind::File(data) => return Some(data),
            Kind::Symlink(target) => {
                let dir = Path::new(&path)
                    .parent()
                    .map_or("/".into(), |p| p.to_string_lossy().into_owned());
                path = normalize(&if target.starts_with('/') {
                    target.clone()
                } else {
                    format!("{dir}/{target}")
                });
            }
            _ => return None,
        }
    }
    None
}

fn read_image(archive: &Path) -> Image {
    let bytes = std::fs::read(archive).unwrap_or_else(|e| panic!("{}: {e}", archive.display()));
    let outer = read_tar(&bytes);
    let json = |name: &str| -> serde_json::Value {
        let data = resolve(&outer, name).unwrap_or_else(|| panic!("the archive lacks {name}"));
        serde_json::from_slice(data).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let manifest = json("manifest.json");
    let manifest = manifest.as_array().expect("manifest.json is a list");
    assert_eq!(manifest.len(), 1, "one image in the archive: {manifest:?}");
    let manifest = &manifest[0];
    let config = json(manifest["Config"].as_str().expect("Config"));
    let mut files = BTreeMap::new();
    for layer in manifest["Layers"].as_array().expect("Layers") {
        let layer = layer.as_str().expect("a layer path");
        let data =
            resolve(&outer, layer).unwrap_or_else(|| panic!("the archive lacks layer {layer}"));
        for (path, entry) in read_tar(data) {
            let name = path.rsplit('/').next().unwrap_or_default();
            assert!(
                !name.starts_with(".wh."),
                "whiteouts are not expected in a FROM SCRATCH image: {path}"
            );
            files.insert(path, entry);
        }
    }
    Image {
        repo_tags: manifest["RepoTags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        os: config["os"].as_str().unwrap_or_default().to_string(),
        config: config["config"].clone(),
        files,
    }
}

// ---- the comparison ----

/// The shared objects `ldd` says `binary` loads, by absolute path (the loader included).
fn ldd(binary: &Path) -> Vec<String> {
    let output = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .expect("ldd runs (package libc-bin)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // A static binary: "not a dynamic executable", and nothing to load.
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("not a dynamic executable"),
            "ldd failed: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return Vec::new();
    }
    let mut libs = Vec::new();
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(!line.contains("not found"), "ldd cannot resolve {line}");
        match words.as_slice() {
            [_, "=>", path, ..] if path.starts_with('/') => libs.push(path.to_string()),
            [path, ..] if path.starts_with('/') => libs.push(path.to_string()),
            _ => {} // linux-vdso.so.1: the kernel's, in no file
        }
    }
    libs
}

/// Every way `image` differs from what `stage` declares and the operator needs to start, one
/// sentence each. Empty when the image is right. `libraries`: what `ldd` says the binary loads.
fn differences(
    stage: &RuntimeStage,
    image: &Image,
    expected_ref: &str,
    libraries: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, problem: String| {
        if !ok {
            problems.push(problem)
        }
    };
    let config = &image.config;

    check(
        image.repo_tags == [expected_ref],
        format!(
            "image name: {:?}, expected [{expected_ref}]",
            image.repo_tags
        ),
    );
    check(image.os == "linux", format!("os {:?}", image.os));

    // USER, ENTRYPOINT, EXPOSE as declared.
    let user = config["User"].as_str().unwrap_or_default();
    check(
        user == stage.user,
        format!("USER: image {user:?}, Dockerfile {:?}", stage.user),
    );
    let entrypoint: Vec<String> =
        serde_json::from_value(config["Entrypoint"].clone()).unwrap_or_default();
    check(
        entrypoint == stage.entrypoint,
        format!(
            "ENTRYPOINT: image {entrypoint:?}, Dockerfile {:?}",
            stage.entrypoint
        ),
    );
    let exposed: BTreeSet<String> = config["ExposedPorts"]
        .as_object()
        .map(|ports| ports.keys().cloned().collect())
        .unwrap_or_default();
    check(
        exposed == stage.exposed,
        format!("EXPOSE: image {exposed:?}, Dockerfile {:?}", stage.exposed),
    );
    // Cmd would be appended to the entrypoint as arguments.
    check(
        config["Cmd"].is_null() || config["Cmd"].as_array().is_some_and(|c| c.is_empty()),
        format!("Cmd is set: {}", config["Cmd"]),
    );

    // Every label of the Dockerfile, with its value; an ARG's value as the image was built with.
    let labels = config["Labels"].as_object().cloned().unwrap_or_default();
    for (key, declared) in &stage.labels {
        let Some(value) = labels.get(key).and_then(|v| v.as_str()) else {
            check(false, format!("label {key} missing"));
            continue;
        };
        match arg_reference(declared) {
            Some("VERSION") => check(
                value == VERSION,
                format!("label {key}={value}, crate version {VERSION}"),
            ),
            Some("REVISION") => {
                let commit = value.strip_suffix("-dirty").unwrap_or(value);
                check(
                    value == "unknown"
                        || (commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit())),
                    format!("label {key}={value}: not a git commit"),
                );
            }
            Some(arg) => check(
                !value.is_empty(),
                format!("label {key} (ARG {arg}) is empty"),
            ),
            None => check(
                value == declared,
                format!("label {key}={value:?}, Dockerfile {declared:?}"),
            ),
        }
    }
    let created = labels
        .get("org.opencontainers.image.created")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    check(
        created.parse::<jiff::Timestamp>().is_ok(),
        format!("label org.opencontainers.image.created={created:?}: not an RFC 3339 time"),
    );

    // The binary, where COPY puts it and ENTRYPOINT runs it, read-only and executable.
    for destination in &stage.copy_destinations {
        match image.files.get(destination) {
            Some(Entry {
                kind: Kind::File(_),
                mode,
                ..
            }) => check(
                mode & 0o7777 == 0o555,
                format!("{destination}: mode {mode:o}, expected 555"),
            ),
            other => check(
                false,
                format!("{destination} (COPY destination) is not a file: {other:?}"),
            ),
        }
    }
    check(
        stage
            .entrypoint
            .first()
            .is_some_and(|e| stage.copy_destinations.contains(e)),
        format!(
            "ENTRYPOINT {:?} runs no file COPY put there",
            stage.entrypoint
        ),
    );

    // The user and group exist by number, so the kubelet's runAsNonRoot check and getpwuid agree.
    let (uid, gid) = stage
        .user
        .split_once(':')
        .unwrap_or((&stage.user, &stage.user));
    let has_id = |file: &str, id: &str| {
        resolve(&image.files, file).is_some_and(|data| {
            String::from_utf8_lossy(data)
                .lines()
                .any(|line| line.split(':').nth(2) == Some(id))
        })
    };
    check(
        has_id("/etc/passwd", uid),
        format!("/etc/passwd has no entry for uid {uid}"),
    );
    check(
        has_id("/etc/group", gid),
        format!("/etc/group has no entry for gid {gid}"),
    );
    check(has_id("/etc/passwd", "0"), "/etc/passwd has no root".into());
    check(
        uid != "0" && uid != "root",
        format!("the image runs as root ({uid})"),
    );

    // The CA bundle the TLS clients read (rustls-native-certs).
    let ca = "/etc/ssl/certs/ca-certificates.crt";
    check(
        resolve(&image.files, ca).is_some_and(|data| {
            String::from_utf8_lossy(data).contains("-----BEGIN CERTIFICATE-----")
        }),
        format!("{ca} is missing or holds no certificate"),
    );

    // Nothing the user could write: everything root's, no group or other write bit.
    for (path, entry) in &image.files {
        if matches!(entry.kind, Kind::Symlink(_)) {
            continue; // a symlink's own mode means nothing
        }
        check(
            entry.uid == 0 && entry.gid == 0 && entry.mode & 0o022 == 0,
            format!(
                "{path} is writable by others or not root's: {}:{} {:o}",
                entry.uid, entry.gid, entry.mode
            ),
        );
        check(
            !matches!(entry.kind, Kind::Other(_)),
            format!("{path}: unexpected entry type {:?}", entry.kind),
        );
    }

    // Every shared object the binary needs, at the path the loader opens.
    for lib in libraries {
        check(
            resolve(&image.files, lib).is_some_and(|data| data.starts_with(b"\x7fELF")),
            format!("{lib} (ldd) is not in the image"),
        );
    }
    problems
}

// ---- the tests ----

fn dockerfile() -> RuntimeStage {
    runtime_stage(&std::fs::read_to_string(format!("{ROOT}/Dockerfile")).expect("the Dockerfile"))
}

/// The archive to check: `OPERATOR_IMAGE_ARCHIVE`, or one `tools/build-image.sh` builds now
/// (once per test run, whichever test asks first).
fn archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        if let Some(path) = std::env::var_os("OPERATOR_IMAGE_ARCHIVE") {
            // tools/test-all.sh sets it empty when its image step failed: no second build.
            assert!(
                !path.is_empty(),
                "OPERATOR_IMAGE_ARCHIVE is empty: tools/build-image.sh failed earlier in this run"
            );
            return PathBuf::from(path);
        }
        eprintln!(
            "OPERATOR_IMAGE_ARCHIVE is not set: building the image with tools/build-image.sh"
        );
        let output = std::process::Command::new(format!("{ROOT}/tools/build-image.sh"))
            .current_dir(ROOT)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("tools/build-image.sh runs");
        assert!(
            output.status.success(),
            "tools/build-image.sh failed: {}",
            output.status
        );
        let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("the archive path on the last line"),
        )
    })
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| read_image(archive()))
}

/// What `ldd` says the image's binary (its entrypoint) loads, resolved on this host: the same
/// glibc the image was built with, as tools/build-image.sh runs on the build host.
fn libraries() -> &'static [String] {
    static LIBRARIES: OnceLock<Vec<String>> = OnceLock::new();
    LIBRARIES.get_or_init(|| {
        let image = image();
        let entrypoint = dockerfile().entrypoint;
        let path = entrypoint.first().expect("an ENTRYPOINT");
        let Some(binary) = resolve(&image.files, path) else {
            return Vec::new(); // reported by differences()
        };
        let dir = std::env::temp_dir().join(format!("thalassa-image-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let copy = dir.join("thalassa-secrets-operator");
        std::fs::write(&copy, binary).expect("a temporary copy of the binary");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let libs = ldd(&copy);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            libs.iter().any(|l| l.contains("libc.so")),
            "ldd names no libc for a binary linked with glibc: {libs:?}"
        );
        libs
    })
}

fn expected_ref() -> String {
    std::env::var("IMAGE_REF")
        .unwrap_or_else(|_| format!("localhost/thalassa-secrets-operator:{VERSION}"))
}

#[test]
fn the_dockerfile_runtime_stage_is_what_the_operator_needs() {
    let stage = dockerfile();
    assert_eq!(stage.user, "65532:65532");
    assert_eq!(
        stage.entrypoint,
        ["/usr/local/bin/thalassa-secrets-operator"]
    );
    assert_eq!(stage.exposed, BTreeSet::from(["8080/tcp".to_string()]));
    assert_eq!(
        stage.copy_destinations,
        ["/usr/local/bin/thalassa-secrets-operator"]
    );
    // `docker build` without --build-arg labels the crate's version.
    assert_eq!(
        stage.args.get("VERSION").map(String::as_str),
        Some(VERSION),
        "the Dockerfile's ARG VERSION default is not Cargo.toml's version"
    );
    for key in [
        "title",
        "description",
        "source",
        "licenses",
        "version",
        "revision",
    ] {
        assert!(
            stage
                .labels
                .contains_key(&format!("org.opencontainers.image.{key}")),
            "the Dockerfile lacks label org.opencontainers.image.{key}: {:?}",
            stage.labels
        );
    }
}

#[test]
fn the_built_image_has_the_dockerfile_layout() {
    let problems = differences(&dockerfile(), image(), &expected_ref(), libraries());
    assert!(
        problems.is_empty(),
        "{} differs from the Dockerfile's runtime stage:\n  {}",
        archive().display(),
        problems.join("\n  ")
    );
}

/// One way to break an image, and the words the comparison must then report.
type Mutation = (&'static str, fn(&mut Image));

/// The comparison catches what it is there for: the same image with one thing wrong fails.
#[test]
fn a_wrong_image_fails_the_comparison() {
    let stage = dockerfile();
    let expected = expected_ref();
    let mutations: [Mutation; 7] = [
        ("USER", |i| i.config["User"] = "0:0".into()),
        ("ENTRYPOINT", |i| {
            i.config["Entrypoint"] = serde_json::json!(["/bin/sh"])
        }),
        ("EXPOSE", |i| {
            i.config["ExposedPorts"] = serde_json::json!({"9090/tcp": {}})
        }),
        ("label org.opencontainers.image.version", |i| {
            i.config["Labels"]["org.opencontainers.image.version"] = "0.0.0".into()
        }),
        ("libc.so.6", |i| {
            i.files.retain(|path, _| !path.ends_with("/libc.so.6"))
        }),
        ("/etc/passwd is writable", |i| {
            i.files.get_mut("/etc/passwd").expect("/etc/passwd").mode = 0o666;
        }),
        ("/etc/passwd has no entry for uid 65532", |i| {
            let passwd = i.files.get_mut("/etc/passwd").expect("/etc/passwd");
            passwd.kind = Kind::File(b"root:x:0:0:root:/root:/sbin/nologin\n".to_vec());
        }),
    ];
    for (what, mutate) in mutations {
        let mut wrong = image().clone();
        mutate(&mut wrong);
        let problems = differences(&stage, &wrong, &expected, libraries());
        assert!(
            problems.iter().any(|p| p.contains(what)),
            "breaking {what} went unnoticed: {problems:?}"
        );
    }
}
