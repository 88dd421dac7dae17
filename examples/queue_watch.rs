//! Creates SQS queues when they are missing and prints the messages that arrive in them,
//! deleting each once printed: the receiving end of `scripts/demo`.
//! `cargo run --release --example queue_watch -- --create --expect 200 QUEUE_NAME...`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:4566")]
    endpoint: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Create the queues (FIFO when the name ends in .fifo) and exit.
    #[arg(long)]
    create: bool,
    /// Stop once this many messages arrived in all queues together.
    #[arg(long, default_value_t = usize::MAX)]
    expect: usize,
    /// Stop after this many seconds in any case.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    queues: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(args.region.clone()))
        .endpoint_url(&args.endpoint)
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&config);

    let mut urls = Vec::new();
    for name in &args.queues {
        let mut request = sqs.create_queue().queue_name(name);
        if name.ends_with(".fifo") {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
        }
        urls.push((
            name.clone(),
            request
                .send()
                .await?
                .queue_url()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    if args.create {
        for (name, url) in &urls {
            println!("queue {name}: {url}");
        }
        return Ok(());
    }

    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    while counts.values().sum::<usize>() < args.expect && Instant::now() < deadline {
        for (name, url) in &urls {
            let received = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .send()
                .await?;
            let mut delete = Vec::new();
            for (i, message) in received.messages().iter().enumerate() {
                let group = message
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                    .map_or("-", String::as_str);
                let body: String = message
                    .body()
                    .unwrap_or_default()
                    .chars()
                    .take(90)
                    .collect();
                println!("{name:<34} group={group:<24} {body}…");
                *counts.entry(name).or_default() += 1;
                delete.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(message.receipt_handle().unwrap_or_default())
                        .build()?,
                );
            }
            if !delete.is_empty() {
                sqs.delete_message_batch()
                    .queue_url(url)
                    .set_entries(Some(delete))
                    .send()
                    .await?;
            }
        }
    }
    for (name, _) in &urls {
        println!(
            "{name}: {} messages",
            counts.get(name.as_str()).unwrap_or(&0)
        );
    }
    Ok(())
}
