use proptest::prelude::*;

use super::*;

fn live() -> Subjects {
    Subjects::new("aerie", "t")
}

/// NATS's matching rules: tokens equal, `*` one token, `>` one or more
/// trailing tokens.
fn nats_matches(pattern: &str, subject: &str) -> bool {
    let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A NATS subject as a server accepts it in PUB: non-empty tokens, no
/// whitespace, no wildcard token.
fn valid_publish_subject(s: &str) -> bool {
    s.split('.').all(|t| {
        !t.is_empty()
            && t != "*"
            && t != ">"
            && !t.contains(|c: char| c.is_whitespace() || c.is_control())
    })
}

/// Levels with every awkward case: empty, dots, wildcards of NATS, `%`,
/// whitespace, controls, `$`, non-ASCII.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-]{1,6}",
        Just(String::new()),
        "[a-z.*>% \t\r\n\u{0}\u{7f}$é€\u{2028}-]{0,5}",
    ]
}

fn topic() -> impl Strategy<Value = String> {
    proptest::collection::vec(level(), 1..5)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("a valid topic name", |t| {
            aerie_proto::topic::validate_topic_name(t).is_ok()
        })
}

/// A filter made from `topic`: some levels become `+`, maybe a trailing `#`.
fn filter_of(topic: String) -> impl Strategy<Value = String> {
    let n = topic.split('/').count();
    (
        proptest::collection::vec(any::<bool>(), n),
        0..=n,
        any::<bool>(),
    )
        .prop_map(move |(plus, cut, hash)| {
            let mut levels: Vec<String> = topic
                .split('/')
                .zip(&plus)
                .map(|(l, p)| if *p { "+".into() } else { l.to_string() })
                .collect();
            if hash {
                levels.truncate(cut);
                levels.push("#".into());
            }
            levels.join("/")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn a_topic_round_trips_through_a_valid_subject(
        tenant in "[a-zA-Z0-9_.%* -]{1,12}",
        topic in topic(),
    ) {
        let subject = live().topic(&tenant, &topic);
        prop_assert!(valid_publish_subject(&subject), "{subject}");
        prop_assert_eq!(live().parse(&subject), Some((tenant, topic)));
    }

    #[test]
    fn what_a_filter_matches_in_mqtt_its_subjects_match_in_nats(
        (topic, filter) in topic().prop_flat_map(|t| (Just(t.clone()), filter_of(t))),
        other in topic(),
    ) {
        prop_assume!(aerie_proto::topic::validate_topic_filter(&filter).is_ok());
        let subjects = live().filter("t", &filter);
        for candidate in [&topic, &other] {
            let subject = live().topic("t", candidate);
            let nats = subjects.iter().any(|f| nats_matches(f, &subject));
            let mqtt = aerie_proto::topic::matches(&filter, candidate);
            // Never narrower; broader only for `$`-topics under a leading wildcard.
            prop_assert!(!mqtt || nats, "{filter} should match {candidate}: {subjects:?}");
            if nats && !mqtt {
                prop_assert!(candidate.starts_with('$'), "{filter} ∌ {candidate}: {subjects:?}");
            }
        }
    }
}

#[test]
fn plain_levels_stay_readable() {
    assert_eq!(
        live().topic("acme", "sensors/temp-1/x_y"),
        "aerie.t.acme.sensors.temp-1.x_y"
    );
    assert_eq!(live().topic("a.b", "a b/./"), "aerie.t.a%2Eb.a%20b.%2E.%");
    assert_eq!(live().filter("acme", "a/+/c"), ["aerie.t.acme.a.*.c"]);
    assert_eq!(
        live().filter("acme", "a/#"),
        ["aerie.t.acme.a", "aerie.t.acme.a.>"]
    );
    assert_eq!(live().filter("acme", "#"), ["aerie.t.acme.>"]);
    assert_eq!(
        live().filter("acme", "+/#"),
        ["aerie.t.acme.*", "aerie.t.acme.*.>"]
    );
}

#[test]
fn tenants_are_one_token_each_and_never_overlap() {
    // A tenant id with a dot must not look like a tenant plus a level.
    let a = live().topic("x.y", "z");
    let b = live().topic("x", "y/z");
    assert_ne!(a, b);
    assert!(!live().filter("x", "#").iter().any(|f| nats_matches(f, &a)));
}

#[test]
fn tokens_no_level_escapes_to_are_refused() {
    for token in ["", "%2", "%zz", "%FF", "a%"] {
        assert_eq!(unescape(token), None, "{token:?}");
    }
    assert_eq!(live().parse("aerie.t.acme"), None);
    assert_eq!(live().parse("other.t.acme.a"), None);
}
