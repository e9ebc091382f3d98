//! How many copies JetStream keeps of each bucket and stream of the
//! scale-out shape: `--nats-replicas` if given, else one per NATS server up
//! to [`MAX_AUTO`], so losing one server of a 3-node cluster loses no
//! ownership, count, retained message, fact or usage report. Streams made
//! with fewer (by an older version, or before the cluster grew) are raised
//! when opened; more are never lowered (an operator's choice).

use async_nats::jetstream;

/// The most replicas chosen without `--nats-replicas`: a quorum survives
/// one server lost, and JetStream stores every write that many times.
pub const MAX_AUTO: usize = 3;

/// The replicas to ask for: `flag` if given, else the servers of the
/// cluster `client` is connected to (its INFO's `connect_urls`, one per
/// server), at most [`MAX_AUTO`]. One before the client has connected.
pub fn wanted(client: &async_nats::Client, flag: Option<usize>) -> usize {
    flag.unwrap_or_else(|| servers(&client.server_info().connect_urls).min(MAX_AUTO))
}

/// The servers that `connect_urls` name (at least the one answering).
fn servers(connect_urls: &[String]) -> usize {
    let distinct: std::collections::HashSet<&str> =
        connect_urls.iter().map(|u| u.as_str()).collect();
    distinct.len().max(1)
}

/// The stream `config` names, made if missing, with its replicas raised
/// to `config.num_replicas` if it has fewer (as [`raise`] does).
pub async fn open_stream(
    js: &jetstream::Context,
    config: jetstream::stream::Config,
) -> Result<jetstream::stream::Stream, String> {
    let stream = js
        .get_or_create_stream(config.clone())
        .await
        .map_err(|e| e.to_string())?;
    let raised = raise_config(js, &stream.cached_info().config, config.num_replicas).await;
    not_raised(&config.name, config.num_replicas, raised);
    Ok(stream)
}

/// Raises the replicas of `stream` to `replicas` if its config says fewer.
/// A failure (NATS busy, fewer servers than asked for) is logged and
/// leaves the stream as it is: it works with fewer copies, and the next
/// open tries again.
pub async fn raise(js: &jetstream::Context, stream: &str, replicas: usize) {
    let raised = async {
        let found = js.get_stream(stream).await.map_err(|e| e.to_string())?;
        raise_config(js, &found.cached_info().config, replicas).await
    };
    not_raised(stream, replicas, raised.await);
}

fn not_raised(stream: &str, replicas: usize, raised: Result<(), String>) {
    if let Err(error) = raised {
        tracing::warn!(%stream, replicas, %error, "cannot raise the stream's replicas; it keeps its own");
    }
}

/// Updates the stream `current` describes to `replicas` if it has fewer.
async fn raise_config(
    js: &jetstream::Context,
    current: &jetstream::stream::Config,
    replicas: usize,
) -> Result<(), String> {
    if current.num_replicas >= replicas {
        return Ok(());
    }
    let config = jetstream::stream::Config {
        num_replicas: replicas,
        ..current.clone()
    };
    js.update_stream(&config).await.map_err(|e| e.to_string())?;
    tracing::info!(stream = %config.name, from = current.num_replicas, to = replicas, "stream replicas raised");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_of_the_cluster_counts_once() {
        assert_eq!(servers(&[]), 1, "a lone server lists nothing");
        let urls = ["127.0.0.1:4222", "127.0.0.1:4223", "127.0.0.1:4222"].map(String::from);
        assert_eq!(servers(&urls), 2);
    }
}
