//! Partition leadership into cluster metadata. A partition's leader is whoever its Raft group
//! elects (`replication::replicas`); the controller is not on the election path. A replica that
//! wins an election reports (partition, node, term) here; shard 0 collects the reports and sends
//! them to the active controller every `REPORT_INTERVAL` as one `SetLeaders` change, which
//! every node applies, so Metadata anywhere names the new leader and its epoch. A leader
//! reports again when its in-sync replicas change, so Metadata's ISR is the leader's view. Reports that do
//! not get through are kept and sent again; older terms never overwrite newer ones.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::cluster::admin::{AdminRequest, LeaderReport, METADATA_SHARD};
use crate::cluster::controller;
use crate::futures::LocalFuture;
use crate::ids::{NodeId, TopicPartition};
use crate::protocol::error;
use crate::replication::replicas::HostedReplicas;
use crate::shard::request::Request;
use crate::shard::Shard;

const REPORT_INTERVAL: Duration = Duration::from_millis(50);
const REPORT_TIMEOUT: Duration = Duration::from_secs(1);

/// Reports waiting on shard 0.
#[derive(Default)]
struct PendingReports(RefCell<Vec<LeaderReport>>);

/// Installs the reporting hook on `shard` (and on shard 0 the sender task).
pub fn install(shard: &Rc<Shard>) {
    let weak = Rc::downgrade(shard);
    shard.service::<HostedReplicas>().set_leader_hook(Rc::new(
        move |topic_partition: TopicPartition, node: NodeId, epoch, isr: Vec<NodeId>| {
            let Some(shard) = weak.upgrade() else { return };
            let report = LeaderReport {
                topic: topic_partition.topic.to_string(),
                partition: topic_partition.partition,
                leader: node,
                epoch,
                isr,
            };
            glommio::spawn_local(async move {
                let _ = shard.call(METADATA_SHARD, Report(report)).await;
            })
            .detach();
        },
    ));
    if shard.id == METADATA_SHARD {
        shard.register(Rc::new(PendingReports::default()));
        glommio::spawn_local(send_reports(Rc::downgrade(shard))).detach();
    }
}

struct Report(LeaderReport);

impl Request for Report {
    type Reply = ();
    fn serve(self, shard: Rc<Shard>) -> LocalFuture<'static, ()> {
        Box::pin(async move {
            shard
                .service::<PendingReports>()
                .0
                .borrow_mut()
                .push(self.0);
        })
    }
}

async fn send_reports(shard: std::rc::Weak<Shard>) {
    loop {
        glommio::timer::sleep(REPORT_INTERVAL).await;
        let Some(shard) = shard.upgrade() else { return };
        let reports: Vec<LeaderReport> = shard.service::<PendingReports>().0.take();
        if reports.is_empty() {
            continue;
        }
        log::debug!("reporting partition leaders: {reports:?}");
        // A controller that does not answer within REPORT_TIMEOUT (cut off, or just lost its
        // leadership) is not waited for: the reports go again, with newer ones, to whichever
        // controller is elected by then (reports are idempotent: only newer epochs count).
        let request = AdminRequest::SetLeaders(reports.clone());
        let outcomes = futures_lite::future::or(
            async { Some(controller::on_admin(&shard, request).await) },
            async {
                glommio::timer::sleep(REPORT_TIMEOUT).await;
                None
            },
        )
        .await;
        let refusal = match &outcomes {
            None => Some("the controller did not answer in time".to_string()),
            Some(outcomes) => outcomes
                .iter()
                .find(|o| o.error_code != error::NONE)
                .map(|o| o.error_message.clone().unwrap_or_default()),
        };
        if let Some(refusal) = refusal {
            log::info!("partition leaders not recorded yet ({refusal}): will report again");
            // Not taken (no controller reachable): keep them for the next round, behind any
            // newer reports.
            let pending = shard.service::<PendingReports>();
            let mut queue = pending.0.borrow_mut();
            let newer = std::mem::take(&mut *queue);
            *queue = reports;
            queue.extend(newer);
        }
    }
}
