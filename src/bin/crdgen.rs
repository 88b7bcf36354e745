//! Generates the CustomResourceDefinitions (the source of `crds/`):
//!
//!   cargo run --bin crdgen -- --out-dir crds   # writes one file per CRD
//!   cargo run --bin crdgen                     # prints them all, in file-name order

fn main() -> std::io::Result<()> {
    let files = thalassa_operator::crd::crd_files();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, dir] if flag == "--out-dir" => {
            for (name, yaml) in files {
                std::fs::write(std::path::Path::new(dir).join(name), yaml)?;
            }
        }
        [] => {
            for (_, yaml) in files {
                print!("{yaml}");
            }
        }
        _ => {
            eprintln!("usage: crdgen [--out-dir DIR]");
            std::process::exit(2);
        }
    }
    Ok(())
}
