//! Property tests: the decoder never panics on arbitrary bytes, and any stream of JSON
//! messages is split back into exactly those messages however the reads are cut.

use proptest::prelude::*;
use remote_device_operator::ovsdb::codec::Framer;
use remote_device_operator::ovsdb::monitor::{Replica, UpdateFormat};
use remote_device_operator::ovsdb::ops::{Datum, parse_transact_result};
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        // Strings full of what confuses a naive splitter.
        "[\\\\\"{}\\[\\]a-zé✓ \n\t\u{0}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\"\\\\{}]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn message() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(json_value(), 0..4).prop_map(Value::Array),
        prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(0usize..512, 0..8),
    ) {
        let mut f = Framer::new();
        let mut cuts = cuts;
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut at = 0;
        for c in cuts {
            let c = c.min(bytes.len());
            if c < at { continue; }
            f.push(&bytes[at..c]);
            at = c;
            // Stops at "need more bytes" or at an error; neither may panic.
            while let Ok(Some(_)) = f.next_message() {}
        }
    }

    #[test]
    fn any_cut_of_a_message_stream_gives_back_the_messages(
        msgs in prop::collection::vec(message(), 1..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ws in "[ \n\t]{0,2}",
    ) {
        let text: String = msgs.iter().map(|m| format!("{ws}{m}")).collect();
        let bytes = text.as_bytes();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut f = Framer::new();
        let mut got = Vec::new();
        let mut at = 0;
        for c in cuts {
            f.push(&bytes[at..c]);
            at = c;
            while let Some(m) = f.next_message().unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn data_decoders_never_panic_on_arbitrary_json(v in json_value()) {
        let _ = Datum::from_json(&v);
        let _ = parse_transact_result(&v, 3);
        let mut r = Replica::default();
        let _ = r.apply(UpdateFormat::Update2, &v);
        let _ = r.apply(UpdateFormat::Update, &v);
    }
}
