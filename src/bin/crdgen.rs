//! Prints the `ThalassaSecret` CustomResourceDefinition as YAML (the source of `crds/`).

fn main() {
    print!("{}", thalassa_operator::crd::crd_yaml());
}
