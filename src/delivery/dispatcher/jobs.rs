//! Building the requests the dispatcher sends: a message's or a batch's envelope, a
//! heartbeat's, the secrets that sign them, and backoff's random factor. Nothing here keeps
//! state; the envelopes are read from the store only for the requests about to go out.

use super::super::heartbeat::{self, Backlog};
use super::super::worker::Job;
use crate::store::{DispatchEndpoint, QueuedMessage, Store, StoreError};

/// A request's messages, each with its event's envelope.
pub(super) type WithPayloads = Vec<(QueuedMessage, String)>;

/// Pairs each message of these requests with its event's envelope, read in one statement on a
/// reader connection. A message whose event is gone (deleted with its endpoint meanwhile) is
/// left out, and so is a request left with none. On failure the requests come back unsent.
pub(super) fn with_payloads(
    store: &Store,
    requests: Vec<Vec<QueuedMessage>>,
) -> Result<Vec<WithPayloads>, (StoreError, Vec<Vec<QueuedMessage>>)> {
    let seqs: Vec<i64> = requests.iter().flatten().map(|m| m.event_seq).collect();
    let payloads = match store.payloads(&seqs) {
        Ok(p) if p.len() == seqs.len() => p,
        Ok(p) => {
            let why = format!("asked for {} envelopes, read {}", seqs.len(), p.len());
            return Err((StoreError::Refused(why), requests));
        }
        Err(e) => return Err((e, requests)),
    };
    let mut payloads = payloads.into_iter();
    Ok(requests
        .into_iter()
        .map(|messages| {
            messages
                .into_iter()
                .filter_map(|m| payloads.next().flatten().map(|p| (m, p)))
                .collect::<Vec<_>>()
        })
        .filter(|r| !r.is_empty())
        .collect())
}

/// One request: a lone message as its own envelope, several as a batch envelope.
pub(super) fn build_job(ep: &DispatchEndpoint, messages: WithPayloads, now: i64) -> Job {
    let secrets = signing_secrets(ep, now);
    let (messages, mut payloads): (Vec<QueuedMessage>, Vec<String>) = messages.into_iter().unzip();
    let (delivery_id, event_header, body) = match messages.as_slice() {
        [m] => (
            m.event_id.clone(),
            m.event_type.clone(),
            payloads.pop().unwrap_or_default(),
        ),
        _ => {
            let id = crate::id::new("bat");
            let payloads: Vec<&str> = payloads.iter().map(String::as_str).collect();
            let body = crate::event::batch_envelope(&id, now, &payloads);
            (id, "batch".to_string(), body)
        }
    };
    Job {
        endpoint_seq: ep.seq,
        url: ep.url.clone(),
        secrets,
        delivery_id,
        event_header,
        body,
        messages,
        heartbeat: false,
    }
}

/// The secrets that sign a request made now, newest first.
pub(super) fn signing_secrets(ep: &DispatchEndpoint, now: i64) -> Vec<String> {
    ep.secrets
        .iter()
        .filter(|(_, expires)| expires.is_none_or(|e| e > now))
        .map(|(s, _)| s.clone())
        .collect()
}

/// A heartbeat request: its own envelope, never with a message.
pub(super) fn heartbeat_job(ep: &DispatchEndpoint, backlog: Backlog, now: i64) -> Job {
    let id = crate::id::new(heartbeat::ID_PREFIX);
    let body = heartbeat::envelope(&id, now, &ep.id, backlog);
    Job {
        endpoint_seq: ep.seq,
        url: ep.url.clone(),
        secrets: signing_secrets(ep, now),
        delivery_id: id,
        event_header: heartbeat::TYPE.to_string(),
        body,
        messages: Vec::new(),
        heartbeat: true,
    }
}

/// A uniform random factor in [1.0, 1.2] from the operating system's generator: the random
/// factor of each backoff (SPEC 4.4), drawn here so that the rules in `policy` stay pure.
pub(super) fn jitter() -> f64 {
    let mut b = [0u8; 4];
    crate::id::fill_random(&mut b);
    1.0 + 0.2 * (u32::from_le_bytes(b) as f64 / u32::MAX as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((1.0..=1.2).contains(&j), "{j}");
        }
    }
}
