//! template.yaml is deployable as it stands: every queue trigger batches explicitly, every
//! dead-letter queue, function and outbox relay has its alarm, no credential is written in
//! the file or resolved into a function's configuration (functions read secrets at init,
//! allowed by one policy on exactly those secrets), the bootstrap runs before any function,
//! every route is behind the session authorizer or said to be public, and the stack can
//! create its data stores and broker or use existing ones.
//! (cfn-lint 1.53.3 and `sam validate --lint` check the rest in `.ci/cloud-parity.sh`.)

use serde_yaml::Value;
use std::collections::BTreeSet;

fn template() -> Value {
    serde_yaml::from_str(local::template::EMBEDDED).expect("template.yaml is YAML")
}

/// The value under a short-form intrinsic tag (`!If [...]` → `[...]`), or the value itself.
fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => &t.value,
        other => other,
    }
}

fn tag(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => Some(t.tag.to_string()),
        _ => None,
    }
}

fn resources_of_type<'a>(doc: &'a Value, ty: &str) -> Vec<(String, &'a Value)> {
    doc["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .map(|(id, r)| (id.as_str().expect("logical id").to_string(), r))
        .collect()
}

/// Every string anywhere under `v`, tags looked through.
fn strings(v: &Value, out: &mut Vec<String>) {
    match untag(v) {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(s) => s.iter().for_each(|x| strings(x, out)),
        Value::Mapping(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

fn alarm_dimension(alarm: &Value, name: &str) -> Option<Value> {
    alarm["Properties"]["Dimensions"]
        .as_sequence()?
        .iter()
        .find(|d| d["Name"].as_str() == Some(name))
        .map(|d| d["Value"].clone())
}

#[test]
fn every_queue_trigger_sets_its_batch_size_and_window_and_reads_the_stacks_broker() {
    let doc = template();
    let mut queues = 0;
    for (id, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        for (_, ev) in f["Properties"]["Events"].as_mapping().into_iter().flatten() {
            if ev["Type"].as_str() != Some("MQ") {
                continue;
            }
            queues += 1;
            let p = &ev["Properties"];
            let batch = p["BatchSize"].as_u64().expect("BatchSize");
            assert!((1..=10_000).contains(&batch), "{id}: BatchSize {batch}");
            let window = p["MaximumBatchingWindowInSeconds"]
                .as_u64()
                .unwrap_or_else(|| panic!("{id}: MaximumBatchingWindowInSeconds"));
            assert!(window <= 300, "{id}: window {window}");
            assert_eq!(tag(&p["Broker"]).as_deref(), Some("!If"), "{id}: Broker");
            let auth = &p["SourceAccessConfigurations"][0];
            assert_eq!(auth["Type"].as_str(), Some("BASIC_AUTH"), "{id}");
            assert_eq!(tag(&auth["URI"]).as_deref(), Some("!If"), "{id}: URI");
            // Creating the trigger fails unless the role may describe the VPC and make ENIs.
            let mut policies = Vec::new();
            strings(&f["Properties"]["Policies"], &mut policies);
            assert!(
                policies
                    .iter()
                    .any(|p| p.ends_with("service-role/AWSLambdaMQExecutionRole")),
                "{id}: AWSLambdaMQExecutionRole"
            );
        }
    }
    assert_eq!(queues, local::template_queues(&parse()).len());
}

fn parse() -> Vec<local::template::FunctionSpec> {
    local::template::parse(local::template::EMBEDDED).expect("template parses")
}

#[test]
fn every_dead_letter_queue_has_an_alarm_on_its_depth() {
    let doc = template();
    let alarmed: BTreeSet<String> = resources_of_type(&doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| a["Properties"]["Namespace"].as_str() == Some("AWS/AmazonMQ"))
        .map(|(id, a)| {
            assert_eq!(
                a["Properties"]["MetricName"].as_str(),
                Some("MessageCount"),
                "{id}"
            );
            assert!(alarm_dimension(a, "Broker").is_some(), "{id}: Broker");
            alarm_dimension(a, "Queue")
                .and_then(|q| q.as_str().map(str::to_string))
                .unwrap_or_else(|| panic!("{id}: Queue dimension"))
        })
        .collect();
    let names = shared::topology::Names::default();
    let expected: BTreeSet<String> = local::template_queues(&parse())
        .iter()
        .map(|q| names.dead_letter_queue(q))
        .collect();
    assert_eq!(alarmed, expected);
}

#[test]
fn every_function_has_an_errors_alarm() {
    let doc = template();
    let functions: BTreeSet<String> = resources_of_type(&doc, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let alarmed: BTreeSet<String> = resources_of_type(&doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| {
            a["Properties"]["Namespace"].as_str() == Some("AWS/Lambda")
                && a["Properties"]["MetricName"].as_str() == Some("Errors")
        })
        .filter_map(|(_, a)| {
            let v = alarm_dimension(a, "FunctionName")?;
            (tag(&v).as_deref() == Some("!Ref"))
                .then(|| untag(&v).as_str().map(str::to_string))
                .flatten()
        })
        .collect();
    assert_eq!(alarmed, functions);
}

#[test]
fn every_outbox_relay_has_a_lag_alarm_on_the_metric_the_relays_emit() {
    let doc = template();
    let relays: BTreeSet<String> = parse()
        .iter()
        .filter_map(|f| f.binary.strip_suffix("-relay").map(str::to_string))
        .collect();
    assert!(relays.len() >= 4, "{relays:?}");
    let alarmed: BTreeSet<String> = resources_of_type(&doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| {
            a["Properties"]["Namespace"].as_str() == Some("Orderflow")
                && a["Properties"]["MetricName"].as_str() == Some("OutboxLagSeconds")
        })
        .filter_map(|(_, a)| {
            alarm_dimension(a, "Service").and_then(|s| s.as_str().map(str::to_string))
        })
        .collect();
    assert_eq!(alarmed, relays);
}

#[test]
fn credentials_are_read_from_secrets_manager_at_init_never_put_in_the_configuration() {
    let doc = template();
    let vars = &doc["Globals"]["Function"]["Environment"]["Variables"];
    for name in ["DATABASE_SECRET_ARN", "REDIS_SECRET_ARN", "AMQP_SECRET_ARN"] {
        assert!(!vars[name].is_null(), "{name} is set for every function");
    }
    // No function's environment resolves a secret at deploy time (its value would be
    // readable by anyone who may read the function's configuration).
    let mut env = Vec::new();
    strings(&doc["Globals"]["Function"]["Environment"], &mut env);
    for (_, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        strings(&f["Properties"]["Environment"], &mut env);
    }
    for s in &env {
        assert!(
            !s.contains("{{resolve:"),
            "a resolved secret in an environment: {s}"
        );
    }
    // Parameter descriptions may show what a URL looks like; values may not hold one with
    // credentials.
    let mut all = Vec::new();
    for section in ["Globals", "Resources", "Outputs", "Conditions"] {
        strings(&doc[section], &mut all);
    }
    for (_, p) in doc["Parameters"].as_mapping().expect("Parameters") {
        strings(&p["Default"], &mut all);
    }
    for s in &all {
        for scheme in [
            "postgres://",
            "redis://",
            "rediss://",
            "amqp://",
            "amqps://",
        ] {
            if let Some(at) = s.find(scheme) {
                let rest = &s[at + scheme.len()..];
                let authority = rest.split('/').next().unwrap_or(rest);
                assert!(
                    !authority.contains('@'),
                    "a {scheme} URL with credentials in template.yaml: {s}"
                );
            }
        }
    }
}

#[test]
fn every_function_may_read_exactly_the_stacks_secrets_and_nothing_else() {
    let doc = template();
    for (id, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        let policies = f["Properties"]["Policies"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{id}: Policies"));
        assert!(
            policies.iter().any(|p| tag(p).as_deref() == Some("!Ref")
                && untag(p).as_str() == Some("FunctionSecretsPolicy")),
            "{id}: FunctionSecretsPolicy"
        );
    }
    let policy = &doc["Resources"]["FunctionSecretsPolicy"];
    assert_eq!(policy["Type"].as_str(), Some("AWS::IAM::ManagedPolicy"));
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .expect("Statement");
    assert_eq!(statements.len(), 1);
    assert_eq!(
        statements[0]["Action"].as_str(),
        Some("secretsmanager:GetSecretValue")
    );
    // The resources are the secrets the environment names (and those the payment and
    // webhook functions name), each by reference: no wildcard.
    let mut granted = Vec::new();
    strings(&statements[0]["Resource"], &mut granted);
    assert!(!granted.iter().any(|r| r.contains('*')), "{granted:?}");
    let mut named = Vec::new();
    let vars = &doc["Globals"]["Function"]["Environment"]["Variables"];
    for name in ["DATABASE_SECRET_ARN", "REDIS_SECRET_ARN", "AMQP_SECRET_ARN"] {
        strings(&vars[name], &mut named);
    }
    for (_, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        if let Some(v) = f["Properties"]["Environment"]["Variables"].as_mapping() {
            for (k, val) in v {
                if k.as_str().is_some_and(|k| k.ends_with("_SECRET_ARN")) {
                    strings(val, &mut named);
                }
            }
        }
    }
    let conditions: BTreeSet<&str> = doc["Conditions"]
        .as_mapping()
        .expect("Conditions")
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    let refs = |v: &[String]| -> BTreeSet<String> {
        v.iter()
            .filter(|s| !conditions.contains(s.as_str()) && *s != "AWS::NoValue")
            .cloned()
            .collect()
    };
    assert_eq!(refs(&granted), refs(&named));
}

#[test]
fn every_function_waits_for_the_bootstrap_which_runs_on_every_code_change() {
    let doc = template();
    // Every function, and so every queue trigger (shards included): an event source
    // mapping refers to its function, which waits for the bootstrap.
    let mut queue_triggers = 0;
    for (id, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        if id == "BootstrapFunction" {
            continue;
        }
        queue_triggers += f["Properties"]["Events"].as_mapping().map_or(0, |e| {
            e.values()
                .filter(|ev| ev["Type"].as_str() == Some("MQ"))
                .count()
        });
        assert_eq!(f["DependsOn"].as_str(), Some("Bootstrap"), "{id}");
    }
    assert!(queue_triggers > 0);
    let bootstrap = &doc["Resources"]["Bootstrap"];
    assert_eq!(bootstrap["Type"].as_str(), Some("Custom::Bootstrap"));
    let mut token = Vec::new();
    strings(&bootstrap["Properties"]["ServiceToken"], &mut token);
    assert_eq!(token, ["BootstrapFunction.Arn"]);
    // A new function version (migrations and topology are compiled in) changes this
    // property, so CloudFormation sends an Update and the bootstrap runs again.
    let version = &bootstrap["Properties"]["FunctionVersion"];
    assert_eq!(untag(version).as_str(), Some("BootstrapFunction.Version"));
    let function = &doc["Resources"]["BootstrapFunction"];
    assert!(function["Properties"]["AutoPublishAlias"].is_string());
    assert_eq!(
        function["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("ops-bootstrap")
    );
}

#[test]
fn every_route_is_protected_by_the_session_authorizer_or_said_to_be_public() {
    let doc = template();
    let auth = &doc["Resources"]["HttpApi"]["Properties"]["Auth"];
    assert_eq!(
        auth["DefaultAuthorizer"].as_str(),
        Some("SessionAuthorizer")
    );
    let authorizer = &auth["Authorizers"]["SessionAuthorizer"];
    assert_eq!(authorizer["EnableSimpleResponses"].as_bool(), Some(true));
    assert_eq!(
        authorizer["AuthorizerPayloadFormatVersion"].as_str(),
        Some("2.0")
    );
    assert!(
        authorizer["Identity"]["ReauthorizeEvery"]
            .as_u64()
            .is_some_and(|t| t > 0)
    );
    let mut public = BTreeSet::new();
    for (id, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        let Some(events) = f["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, ev) in events
            .iter()
            .filter(|(_, e)| e["Type"].as_str() == Some("HttpApi"))
        {
            let p = &ev["Properties"];
            match p["Auth"]["Authorizer"].as_str() {
                Some("NONE") => {
                    public.insert(format!(
                        "{} {}",
                        p["Method"].as_str().unwrap_or_default(),
                        p["Path"].as_str().unwrap_or_default()
                    ));
                }
                None => {}
                Some(other) => panic!("{id}: unknown authorizer {other}"),
            }
        }
    }
    assert_eq!(
        public,
        BTreeSet::from(
            [
                "POST /users",
                "POST /sessions",
                "GET /products",
                "GET /products/{id}/stock",
                "GET /stock"
            ]
            .map(str::to_string)
        )
    );
}

#[test]
fn the_complete_stack_is_created_only_on_request_and_opens_no_port_to_the_world() {
    let doc = template();
    assert_eq!(
        doc["Parameters"]["CreateDataStores"]["Default"].as_str(),
        Some("false")
    );
    for ty in [
        "AWS::EC2::VPC",
        "AWS::EC2::Subnet",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::EC2::SecurityGroupEgress",
        "AWS::EC2::VPCEndpoint",
        "AWS::RDS::DBInstance",
        "AWS::ElastiCache::ReplicationGroup",
    ] {
        let found = resources_of_type(&doc, ty);
        assert!(!found.is_empty(), "{ty}");
        for (id, r) in found {
            assert_eq!(r["Condition"].as_str(), Some("CreateDataStores"), "{id}");
        }
    }
    // Nothing comes in from an address range: every ingress names a security group.
    for (id, sg) in resources_of_type(&doc, "AWS::EC2::SecurityGroup") {
        assert!(sg["Properties"]["SecurityGroupIngress"].is_null(), "{id}");
        assert!(
            sg["Properties"]["SecurityGroupEgress"].is_sequence(),
            "{id}: egress said explicitly (not the default all-traffic rule)"
        );
    }
    for (id, rule) in resources_of_type(&doc, "AWS::EC2::SecurityGroupIngress") {
        assert!(rule["Properties"]["CidrIp"].is_null(), "{id}");
        assert!(
            !rule["Properties"]["SourceSecurityGroupId"].is_null(),
            "{id}"
        );
    }
    let mut services = BTreeSet::new();
    for (_, e) in resources_of_type(&doc, "AWS::EC2::VPCEndpoint") {
        let mut name = Vec::new();
        strings(&e["Properties"]["ServiceName"], &mut name);
        if let Some(n) = name.first().and_then(|n| n.rsplit('.').next()) {
            services.insert(n.to_string());
        }
    }
    for needed in [
        "secretsmanager",
        "logs",
        "monitoring",
        "lambda",
        "sts",
        "s3",
    ] {
        assert!(services.contains(needed), "{needed} endpoint: {services:?}");
    }
    let db = &doc["Resources"]["Database"]["Properties"];
    assert_eq!(db["PubliclyAccessible"].as_bool(), Some(false));
    assert_eq!(db["ManageMasterUserPassword"].as_bool(), Some(true));
    let cache = &doc["Resources"]["Cache"]["Properties"];
    assert_eq!(cache["TransitEncryptionEnabled"].as_bool(), Some(true));
}

#[test]
fn the_broker_is_created_only_when_no_existing_one_is_named() {
    let doc = template();
    let cond = &doc["Conditions"]["CreateBroker"];
    assert_eq!(tag(cond).as_deref(), Some("!Equals"));
    assert_eq!(doc["Parameters"]["BrokerArn"]["Default"].as_str(), Some(""));
    let brokers = resources_of_type(&doc, "AWS::AmazonMQ::Broker");
    assert_eq!(brokers.len(), 1);
    let broker = brokers[0].1;
    assert_eq!(broker["Condition"].as_str(), Some("CreateBroker"));
    assert_eq!(
        broker["Properties"]["EngineType"].as_str(),
        Some("RABBITMQ")
    );
    assert_eq!(
        broker["Properties"]["PubliclyAccessible"].as_bool(),
        Some(false)
    );
    let secrets: BTreeSet<(String, Option<&str>)> =
        resources_of_type(&doc, "AWS::SecretsManager::Secret")
            .into_iter()
            .map(|(id, s)| (id, s["Condition"].as_str()))
            .collect();
    assert_eq!(
        secrets,
        BTreeSet::from([
            ("BrokerCredentials".to_string(), Some("CreateBrokerSecret")),
            ("CacheAuthToken".to_string(), Some("CreateDataStores")),
        ])
    );
    // A deploy without hand edits needs every parameter without a default to be one that
    // `sam deploy --guided` can ask for. PaymentGateway has none on purpose: a deploy says
    // whether it charges real cards (http) or is a test stage (simulated).
    let required: BTreeSet<&str> = doc["Parameters"]
        .as_mapping()
        .expect("Parameters")
        .iter()
        .filter(|(_, p)| p.get("Default").is_none())
        .filter_map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(required, BTreeSet::from(["PaymentGateway"]));
}

#[test]
fn the_stack_outputs_the_api_url() {
    let doc = template();
    let mut url = Vec::new();
    strings(&doc["Outputs"]["ApiUrl"]["Value"], &mut url);
    assert!(
        url.iter()
            .any(|s| s.starts_with("https://${HttpApi}.execute-api.")),
        "{url:?}"
    );
    assert_eq!(
        doc["Globals"]["Function"]["LoggingConfig"]["LogFormat"].as_str(),
        Some("JSON")
    );
}

/// A parameter's default, as a number.
fn parameter_default(doc: &Value, name: &str) -> u64 {
    let p = &doc["Parameters"][name];
    assert_eq!(p["Type"].as_str(), Some("Number"), "{name} is a number");
    p["Default"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} has a numeric default"))
}

#[test]
fn the_http_api_throttles_every_route_by_parameters_with_sensible_defaults() {
    let doc = template();
    let settings = &doc["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"];
    for (setting, param) in [
        ("ThrottlingRateLimit", "ApiThrottlingRateLimit"),
        ("ThrottlingBurstLimit", "ApiThrottlingBurstLimit"),
    ] {
        let v = &settings[setting];
        assert_eq!(tag(v).as_deref(), Some("!Ref"), "{setting} is a parameter");
        assert_eq!(untag(v).as_str(), Some(param), "{setting}");
    }
    let rate = parameter_default(&doc, "ApiThrottlingRateLimit");
    let burst = parameter_default(&doc, "ApiThrottlingBurstLimit");
    // Far below API Gateway's account default (10,000/s), at least what a shop's front
    // end needs, and a burst no smaller than the rate.
    assert!((10..=5_000).contains(&rate), "rate {rate}");
    assert!(burst >= rate, "burst {burst} < rate {rate}");
}

#[test]
fn every_http_function_has_reserved_concurrency_and_no_queue_function_does() {
    let doc = template();
    let reserved = parameter_default(&doc, "HttpReservedConcurrency");
    assert!((1..=100).contains(&reserved), "default {reserved}");
    let mut http = 0;
    for (id, f) in resources_of_type(&doc, "AWS::Serverless::Function") {
        let is_http = f["Properties"]["Events"]
            .as_mapping()
            .is_some_and(|e| e.values().any(|ev| ev["Type"].as_str() == Some("HttpApi")));
        let rce = &f["Properties"]["ReservedConcurrentExecutions"];
        if !is_http {
            // Capping a consumer would only slow the drain of its queue.
            assert!(
                rce.is_null(),
                "{id}: queue and schedule functions are not capped"
            );
            continue;
        }
        http += 1;
        assert_eq!(tag(rce).as_deref(), Some("!If"), "{id}: {rce:?}");
        let branches = untag(rce).as_sequence().expect("!If [cond, a, b]");
        assert_eq!(branches[0].as_str(), Some("ReserveHttpConcurrency"), "{id}");
        assert_eq!(
            untag(&branches[1]).as_str(),
            Some("HttpReservedConcurrency"),
            "{id}"
        );
        assert_eq!(untag(&branches[2]).as_str(), Some("AWS::NoValue"), "{id}");
    }
    assert_eq!(http, 7, "seven HTTP functions");
    assert_eq!(
        tag(&doc["Conditions"]["ReserveHttpConcurrency"]).as_deref(),
        Some("!Not"),
        "0 reserves nothing (a reservation of 0 would stop the function)"
    );
}

#[test]
fn logging_out_everywhere_is_routed_to_the_logout_function() {
    let specs = local::template::parse(local::template::EMBEDDED).expect("template");
    let logout = specs
        .iter()
        .find(|s| s.binary == "identity-logout")
        .expect("identity-logout");
    for path in ["/sessions/current", "/sessions"] {
        assert!(
            logout.triggers.iter().any(|t| matches!(
                t,
                local::template::Trigger::Http { method, path: p, .. } if method == "DELETE" && p == path
            )),
            "DELETE {path}"
        );
    }
}

/// Where a template's event source mappings or dead-letter alarms disagree with a
/// function's `Metadata.Orderflow.Shards`: N mappings, one per shard queue, and one
/// dead-letter alarm per shard queue's dead-letter queue, none for another shard count.
fn shard_violations(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let alarmed: Vec<String> = resources_of_type(doc, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|(_, a)| a["Properties"]["Namespace"].as_str() == Some("AWS/AmazonMQ"))
        .filter_map(|(_, a)| alarm_dimension(a, "Queue")?.as_str().map(str::to_string))
        .collect();
    for (id, f) in resources_of_type(doc, "AWS::Serverless::Function") {
        let mut queues: Vec<String> = f["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter(|(_, e)| e["Type"].as_str() == Some("MQ"))
            .filter_map(|(_, e)| e["Properties"]["Queues"][0].as_str().map(str::to_string))
            .collect();
        if queues.is_empty() {
            continue;
        }
        queues.sort();
        let Some(n) = f["Metadata"]["Orderflow"]["Shards"].as_u64() else {
            out.push(format!("{id}: no Metadata.Orderflow.Shards"));
            continue;
        };
        let stem = shared::topology::shard_stem(&queues[0]);
        let stem = if n == 1 { queues[0].as_str() } else { stem };
        let mut want = shared::topology::shard_queues(stem, n as usize);
        want.sort();
        if queues != want {
            out.push(format!(
                "{id}: Shards {n} but {} MQ event source mapping(s) on {queues:?}",
                queues.len()
            ));
        }
        let names = shared::topology::Names::default();
        for q in &want {
            let dlq = names.dead_letter_queue(q);
            if !alarmed.contains(&dlq) {
                out.push(format!("{id}: no dead-letter alarm on {dlq}"));
            }
        }
        for a in &alarmed {
            let Some(q) = a.strip_suffix(".dlq") else {
                continue;
            };
            // This function's queue at any shard count (`stem` or `stem.<i>`) must be live.
            if shared::topology::shard_stem(q) == stem && !want.iter().any(|w| w == q) {
                out.push(format!(
                    "{id}: alarm on {a}, a queue of another shard count"
                ));
            }
        }
    }
    out
}

#[test]
fn every_queue_function_states_its_shard_count_and_the_template_agrees_with_it() {
    assert_eq!(shard_violations(&template()), Vec::<String>::new());
    // The plain queue names at one shard: nothing changes for an existing deployment.
    for q in local::template_queues(&parse()) {
        assert!(!q.contains('.'), "{q}");
    }
}

#[test]
fn a_template_at_4_shards_has_4_mappings_4_queues_and_4_alarms_per_queue_function() {
    let text = local::template::with_shards(local::template::EMBEDDED, &[("all".into(), 4)])
        .expect("template at 4 shards");
    let doc: Value = serde_yaml::from_str(&text).expect("YAML");
    assert_eq!(shard_violations(&doc), Vec::<String>::new());
    let specs = local::template::parse(&text).expect("parses");
    let functions = local::template::queue_specs(&specs);
    assert!(functions.len() >= 5);
    for f in &functions {
        assert_eq!(f.shards, 4, "{}", f.queue);
    }
    let mappings = resources_of_type(&doc, "AWS::Serverless::Function")
        .iter()
        .flat_map(|(_, f)| f["Properties"]["Events"].as_mapping().into_iter().flatten())
        .filter(|(_, e)| e["Type"].as_str() == Some("MQ"))
        .count();
    assert_eq!(mappings, 4 * functions.len());
    assert_eq!(local::template_queues(&specs).len(), 4 * functions.len());
    let dead_letter_alarms = resources_of_type(&doc, "AWS::CloudWatch::Alarm")
        .iter()
        .filter(|(_, a)| a["Properties"]["Namespace"].as_str() == Some("AWS/AmazonMQ"))
        .count();
    assert_eq!(dead_letter_alarms, 4 * functions.len());
    // And back: the template at 1 shard is the original one again, as far as it matters.
    let back = local::template::with_shards(&text, &[("all".into(), 1)]).expect("back to 1");
    assert_eq!(local::template::parse(&back).expect("parses"), parse());
}

#[test]
fn a_template_whose_mappings_disagree_with_its_shard_count_is_refused() {
    let text = local::template::with_shards(local::template::EMBEDDED, &[("all".into(), 4)])
        .expect("template at 4 shards");
    // One shard's event source mapping missing.
    let mut doc: Value = serde_yaml::from_str(&text).expect("YAML");
    doc["Resources"]["OrderSagaFunction"]["Properties"]["Events"]
        .as_mapping_mut()
        .expect("Events")
        .remove("Queue3");
    let violations = shard_violations(&doc);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].starts_with("OrderSagaFunction: Shards 4 but 3"));
    let err =
        local::template::parse(&serde_yaml::to_string(&doc).expect("YAML")).expect_err("refused");
    assert!(err.to_string().contains("Shards is 4"), "{err}");
    // A shard count raised by hand, without mappings or alarms.
    let mut doc: Value = serde_yaml::from_str(local::template::EMBEDDED).expect("YAML");
    doc["Resources"]["OrderSagaFunction"]["Metadata"]["Orderflow"]["Shards"] = Value::from(2);
    let violations = shard_violations(&doc);
    assert_eq!(violations.len(), 4, "{violations:?}");
    assert!(local::template::parse(&serde_yaml::to_string(&doc).expect("YAML")).is_err());
}
