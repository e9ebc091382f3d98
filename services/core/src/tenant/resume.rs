//! A session resumed from another node's record: its replayed messages,
//! made into deliveries by the session's own subscriptions.

use std::sync::Arc;

use aerie_proto::{QoS, topic};

use super::split_shared;
use crate::message::{Delivery, Message, MessageId};
use crate::seams::{FlightStage, RecordedFlight, WindowChange};
use crate::session::{OutFlight, SubscriptionSpec};

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

/// A resumed session's deliveries split by what its record says the client
/// had of them: the flights to resend (in send order: a PUBLISH with DUP
/// under its packet id, or a PUBREL), the deliveries to queue as new (none
/// the client completed at QoS 2 or has released), and the recorded flights
/// whose message the replay did not bring (the cursor's margin covers them,
/// so only a log that dropped them): forgotten.
pub(crate) struct Resent {
    pub flights: Vec<(u16, OutFlight)>,
    pub queued: Vec<Delivery>,
    pub forgotten: Vec<WindowChange>,
}

pub(crate) fn in_flight_again(
    recorded: &[RecordedFlight],
    completed_qos2: &[MessageId],
    deliveries: Vec<Delivery>,
) -> Resent {
    use std::collections::{HashMap, HashSet};
    let completed: HashSet<MessageId> = completed_qos2.iter().copied().collect();
    let by_id: HashMap<MessageId, &RecordedFlight> = recorded.iter().map(|f| (f.id, f)).collect();
    let mut found: HashMap<u16, Delivery> = HashMap::new();
    let mut queued = Vec::with_capacity(deliveries.len());
    for mut d in deliveries {
        if completed.contains(&d.message.id) {
            continue;
        }
        match by_id.get(&d.message.id) {
            Some(f) if f.state == FlightStage::Released => {}
            Some(f) => {
                d.qos = match f.state {
                    FlightStage::Qos1 => QoS::AtLeastOnce,
                    _ => QoS::ExactlyOnce,
                };
                found.insert(f.packet_id, d);
            }
            None => queued.push(d),
        }
    }
    let mut flights = Vec::with_capacity(recorded.len());
    let mut forgotten = Vec::new();
    for f in recorded {
        match (f.state, found.remove(&f.packet_id)) {
            (FlightStage::Released, _) => flights.push((f.packet_id, OutFlight::Released)),
            (_, Some(d)) => flights.push((f.packet_id, OutFlight::Publish(d))),
            (_, None) => forgotten.push(WindowChange::Forgotten(f.packet_id)),
        }
    }
    Resent {
        flights,
        queued,
        forgotten,
    }
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

    fn delivery(m: Arc<Message>, qos: QoS) -> Delivery {
        Delivery {
            message: m,
            qos,
            retain: false,
            subscription_ids: Default::default(),
            shared: None,
            stored_seq: None,
        }
    }

    fn flight(packet_id: u16, seq: u64, state: FlightStage) -> RecordedFlight {
        RecordedFlight {
            packet_id,
            id: MessageId {
                seq,
                ..MessageId::default()
            },
            state,
        }
    }

    #[test]
    fn what_was_in_flight_is_resent_under_its_packet_id_and_nothing_completed_comes_again() {
        let deliveries = (1..=6)
            .map(|seq| delivery(message("t", seq), QoS::ExactlyOnce))
            .collect();
        let recorded = [
            flight(9, 2, FlightStage::Qos2),
            flight(7, 3, FlightStage::Released),
            flight(8, 1, FlightStage::Qos1),
            // Its message is not in the replay.
            flight(5, 40, FlightStage::Qos2),
        ];
        let completed = [MessageId {
            seq: 4,
            ..MessageId::default()
        }];
        let resent = in_flight_again(&recorded, &completed, deliveries);
        let flights: Vec<_> = resent
            .flights
            .iter()
            .map(|(id, f)| match f {
                OutFlight::Publish(d) => (*id, Some((d.message.id.seq, d.qos))),
                OutFlight::Released => (*id, None),
            })
            .collect();
        assert_eq!(
            flights,
            vec![
                (9, Some((2, QoS::ExactlyOnce))),
                (7, None),
                (8, Some((1, QoS::AtLeastOnce))),
            ]
        );
        let queued: Vec<u64> = resent.queued.iter().map(|d| d.message.id.seq).collect();
        assert_eq!(queued, vec![5, 6]);
        assert_eq!(resent.forgotten, vec![WindowChange::Forgotten(5)]);
    }
}
