//! A session resumed from another node's record: its replayed messages,
//! made into deliveries by the session's own subscriptions.

use std::sync::Arc;

use aerie_proto::{QoS, topic};

use super::split_shared;
use crate::message::{Delivery, Message};
use crate::session::SubscriptionSpec;

/// The deliveries of `replayed` (oldest first) for a session holding
/// `subscriptions`, as a live publish would have made them: a message no
/// subscription matches is skipped (the log's subjects are broader than
/// MQTT filters: `$` topics, `#`), overlapping subscriptions make one
/// delivery at the highest QoS with every identifier. QoS 0 messages are
/// never in the log; shared subscriptions are served by their group live. A
/// message id seen before is skipped: a QoS 2 resend after a node's death
/// is the same message (the log drops such a copy only within its
/// duplicate window).
pub(crate) fn replayed_deliveries(
    subscriptions: &[(Arc<str>, SubscriptionSpec)],
    replayed: Vec<Arc<Message>>,
) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(replayed.len());
    let mut seen = std::collections::HashSet::with_capacity(replayed.len());
    for message in replayed {
        if !seen.insert(message.id) {
            continue;
        }
        let mut delivery: Option<Delivery> = None;
        for (filter, spec) in subscriptions {
            let (inner, group) = split_shared(filter);
            if group.is_some() || !topic::matches(inner, &message.topic) {
                continue;
            }
            let qos = message.qos.min(spec.options.qos);
            let retain = message.retain && spec.options.retain_as_published;
            let d = delivery.get_or_insert_with(|| Delivery {
                message: message.clone(),
                qos: QoS::AtMostOnce,
                retain: false,
                subscription_ids: Default::default(),
                shared: None,
                stored_seq: None,
            });
            d.qos = d.qos.max(qos);
            d.retain |= retain;
            d.subscription_ids.extend(spec.id);
        }
        out.extend(delivery);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{MessageId, Origin};
    use aerie_proto::{PublishProperties, SubscriptionOptions};

    fn message(topic: &str, seq: u64) -> Arc<Message> {
        Message::published(
            topic.into(),
            bytes::Bytes::from_static(b"x"),
            QoS::ExactlyOnce,
            false,
            PublishProperties::default(),
            Origin::default(),
            MessageId {
                seq,
                ..MessageId::default()
            },
        )
    }

    fn sub(filter: &str, qos: QoS, id: Option<u32>) -> (Arc<str>, SubscriptionSpec) {
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        (Arc::from(filter), SubscriptionSpec { options, id })
    }

    #[test]
    fn only_messages_the_subscriptions_match_are_replayed_at_their_qos_and_once() {
        let subs = [
            sub("#", QoS::AtLeastOnce, Some(1)),
            sub("a/+", QoS::ExactlyOnce, Some(2)),
            sub("$share/g/b/+", QoS::ExactlyOnce, Some(3)),
        ];
        let got = replayed_deliveries(
            &subs,
            vec![
                message("a/b", 1),
                message("$SYS/x", 2),
                message("c", 3),
                message("b/x", 4),
                message("b/x", 4),
            ],
        );
        let seen: Vec<_> = got
            .iter()
            .map(|d| (d.message.id.seq, d.qos, d.subscription_ids.to_vec()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, QoS::ExactlyOnce, vec![1, 2]),
                (3, QoS::AtLeastOnce, vec![1]),
                (4, QoS::AtLeastOnce, vec![1]),
            ]
        );
    }
}
