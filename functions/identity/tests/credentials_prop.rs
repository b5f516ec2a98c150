//! Property tests of `POST /users` and `POST /sessions` at the edge: the JSON body
//! (`Credentials`), then `Email` and `Password`, fed arbitrary bytes and mutations of the
//! sample request under `events/`. Never a panic; a refusal has a message and never echoes
//! the password; valid generated credentials round-trip.

#[path = "../../../shared/tests/support/mutate.rs"]
mod mutate;

use identity::domain::{Email, InvalidInput, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, Password};
use identity::functions::Credentials;
use proptest::prelude::*;
use serde_json::{Value, json};

fn sample_body() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/identity/identity-register.json");
    let sample: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("sample")).expect("JSON");
    serde_json::from_str(sample["body"].as_str().expect("body")).expect("JSON body")
}

/// What identity-register does with a body before it touches the database.
fn parse(body: &[u8]) -> Result<(Email, Password), String> {
    let mut req = shared::http::request("POST", "/users", "POST /users");
    req.body = Some(String::from_utf8_lossy(body).into_owned());
    let creds: Credentials = shared::http::json_body(&req).map_err(|e| {
        assert_eq!(e.status, 400);
        e.message
    })?;
    let refused = |e: InvalidInput| {
        let message = e.to_string();
        assert!(
            creds.password.len() < 4 || !message.contains(&creds.password),
            "a refusal echoes the password"
        );
        message
    };
    let email = Email::parse(&creds.email).map_err(refused)?;
    let password = Password::parse(&creds.password).map_err(refused)?;
    Ok((email, password))
}

fn check(body: &[u8]) {
    match parse(body) {
        Ok((email, password)) => {
            assert!(email.as_str().contains('@'));
            assert!(password.expose().chars().count() >= MIN_PASSWORD_LEN);
            assert_eq!(format!("{password:?}"), "Password(***)");
        }
        Err(message) => assert!(!message.trim().is_empty()),
    }
}

fn email() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._%+-]{1,30}@[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,10}){1,3}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn credential_bodies_from_arbitrary_bytes_never_panic(body in mutate::junk()) {
        check(&body);
    }

    #[test]
    fn mutated_credential_bodies_parse_or_are_refused_with_a_reason(
        body in mutate::mutated_json(vec![sample_body()])
    ) {
        check(&body);
    }

    #[test]
    fn valid_credentials_round_trip(
        // Control characters are refused in any field (a 400), so valid ones have none.
        email in email(), password in "[^\\p{Cc}]{8,64}", pad in " {0,3}"
    ) {
        let body = json!({"email": format!("{pad}{email}{pad}"), "password": password});
        let (parsed, pw) = parse(body.to_string().as_bytes()).expect("valid");
        prop_assert_eq!(parsed.as_str(), email.as_str());
        prop_assert_eq!(pw.expose(), password.as_str());
    }

    #[test]
    fn passwords_are_refused_below_8_and_above_1024_characters(password in ".{0,7}|.{1025,1100}") {
        let err = Password::parse(&password).expect_err("refused");
        let expected = if password.chars().count() < MIN_PASSWORD_LEN {
            InvalidInput::PasswordTooShort
        } else {
            InvalidInput::PasswordTooLong
        };
        prop_assert_eq!(err, expected);
        prop_assert!(MAX_PASSWORD_LEN < 1025);
    }

    #[test]
    fn any_text_is_an_email_or_refused_without_panicking(raw in ".{0,300}") {
        match Email::parse(&raw) {
            Ok(email) => {
                prop_assert_eq!(email.as_str().matches('@').count(), 1);
                prop_assert!(email.as_str().chars().count() <= 254);
            }
            Err(e) => prop_assert_eq!(e, InvalidInput::Email),
        }
    }
}
