//! template.yaml, the registry of in-process functions and the binaries agree: every
//! template function names an existing binary, and every binary has a template function.

use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn every_template_function_has_a_binary_and_every_binary_a_template_function() {
    let specs = local::template::parse(local::template::EMBEDDED).expect("template parses");
    let in_template: BTreeSet<String> = specs.iter().map(|s| s.binary.clone()).collect();
    assert_eq!(in_template.len(), specs.len(), "binary names are unique");

    let functions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions");
    let mut binaries = BTreeSet::new();
    for service in std::fs::read_dir(&functions).expect("functions/") {
        let bin = service.expect("entry").path().join("src/bin");
        for f in std::fs::read_dir(&bin).unwrap_or_else(|_| panic!("{} exists", bin.display())) {
            let name = f
                .expect("entry")
                .path()
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("name")
                .to_string();
            binaries.insert(name);
        }
    }
    let registered: BTreeSet<String> = local::registry::all()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();

    assert_eq!(
        in_template, binaries,
        "template.yaml functions vs functions/*/src/bin/*.rs"
    );
    let hosted: BTreeSet<String> = in_template
        .iter()
        .filter(|b| !local::registry::NOT_HOSTED.contains(&b.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        hosted, registered,
        "template.yaml functions vs the services' FUNCTIONS lists"
    );
}

#[test]
fn every_function_declares_the_lambda_build_of_its_binary() {
    let doc: serde_yaml::Value = serde_yaml::from_str(local::template::EMBEDDED).expect("yaml");
    let resources = doc["Resources"].as_mapping().expect("Resources");
    for (id, res) in resources {
        if res["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        assert_eq!(
            res["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{id:?}"
        );
    }
    assert_eq!(
        doc["Globals"]["Function"]["Runtime"].as_str(),
        Some("provided.al2023")
    );
    assert_eq!(
        doc["Globals"]["Function"]["Architectures"][0].as_str(),
        Some("arm64")
    );
}
