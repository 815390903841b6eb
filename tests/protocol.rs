//! Raw Kafka-protocol tests: every advertised API at every advertised version gets an answer the
//! reference codec decodes; bad requests get Kafka's error codes; malformed frames close only
//! their own connection and never take the broker down.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Broker, RawClient};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use sluice::protocol::batch::encode_batch;
use sluice::protocol::versions::SUPPORTED_APIS;

fn name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_string()))
}

fn decode<T: Decodable>(mut body: Bytes, version: i16) -> T {
    let decoded = T::decode(&mut body, version).expect("response decodes");
    assert!(body.is_empty(), "trailing bytes in response v{version}");
    decoded
}

fn create_topics(
    client: &mut RawClient,
    names: &[&str],
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let mut request = CreateTopicsRequest::default();
    request.timeout_ms = 10_000;
    for topic_name in names {
        let mut topic = create_topics_request::CreatableTopic::default();
        topic.name = name(topic_name);
        topic.num_partitions = partitions;
        topic.replication_factor = 1;
        for (key, value) in configs {
            let mut config = create_topics_request::CreatableTopicConfig::default();
            config.name = StrBytes::from_string(key.to_string());
            config.value = Some(StrBytes::from_string(value.to_string()));
            topic.configs.push(config);
        }
        request.topics.push(topic);
    }
    let body = client.request(ApiKey::CreateTopics, 7, &request).unwrap();
    let response: CreateTopicsResponse = decode(body, 7);
    for topic in response.topics {
        assert_eq!(
            topic.error_code, 0,
            "create {:?}: {:?}",
            topic.name, topic.error_message
        );
    }
}

fn produce_request(topic: &str, partition: i32, acks: i16, records: Vec<u8>) -> ProduceRequest {
    let mut partition_data = produce_request::PartitionProduceData::default();
    partition_data.index = partition;
    partition_data.records = Some(Bytes::from(records));
    let mut topic_data = produce_request::TopicProduceData::default();
    topic_data.name = name(topic);
    topic_data.partition_data.push(partition_data);
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 10_000;
    request.topic_data.push(topic_data);
    request
}

fn produce(client: &mut RawClient, version: i16, request: &ProduceRequest) -> (i16, i64) {
    let body = client.request(ApiKey::Produce, version, request).unwrap();
    let response: ProduceResponse = decode(body, version);
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

fn valid_batch() -> Vec<u8> {
    encode_batch(&[(Some(b"key"), Some(b"value"))], 1_700_000_000_000)
}

fn fetch_request(version: i16, topic: &str, topic_id: uuid::Uuid, offset: i64) -> FetchRequest {
    let mut partition = fetch_request::FetchPartition::default();
    partition.partition = 0;
    partition.fetch_offset = offset;
    partition.partition_max_bytes = 1 << 20;
    let mut fetch_topic = fetch_request::FetchTopic::default();
    if version >= 13 {
        fetch_topic.topic_id = topic_id;
    } else {
        fetch_topic.topic = name(topic);
    }
    fetch_topic.partitions.push(partition);
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = 0;
    request.min_bytes = 0;
    request.max_bytes = 1 << 20;
    request.session_epoch = -1;
    request.topics.push(fetch_topic);
    request
}

fn topic_id(client: &mut RawClient, topic: &str) -> uuid::Uuid {
    let mut request = MetadataRequest::default();
    let mut wanted = metadata_request::MetadataRequestTopic::default();
    wanted.name = Some(name(topic));
    request.topics = Some(vec![wanted]);
    let body = client.request(ApiKey::Metadata, 12, &request).unwrap();
    let response: MetadataResponse = decode(body, 12);
    response.topics[0].topic_id
}

#[test]
fn every_advertised_api_version_answers_with_a_decodable_response() {
    let broker = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["t", "grow"], 1, &[]);
    let id = topic_id(&mut client, "t");
    let mut grow_to = 1;
    for (api, min, max) in SUPPORTED_APIS {
        for version in *min..=*max {
            match api {
                ApiKey::ApiVersions => {
                    let mut request = ApiVersionsRequest::default();
                    request.client_software_name = StrBytes::from_static_str("raw");
                    request.client_software_version = StrBytes::from_static_str("1");
                    let body = client.request(*api, version, &request).unwrap();
                    let response: ApiVersionsResponse = decode(body, version);
                    assert_eq!(response.error_code, 0);
                    assert_eq!(response.api_keys.len(), SUPPORTED_APIS.len());
                }
                ApiKey::Metadata => {
                    let mut request = MetadataRequest::default();
                    let mut wanted = metadata_request::MetadataRequestTopic::default();
                    wanted.name = Some(name("t"));
                    request.topics = Some(vec![wanted]);
                    let body = client.request(*api, version, &request).unwrap();
                    let response: MetadataResponse = decode(body, version);
                    assert_eq!(response.topics[0].error_code, 0, "v{version}");
                    assert_eq!(response.brokers.len(), 1);
                }
                ApiKey::Produce => {
                    let request = produce_request("t", 0, -1, valid_batch());
                    let (error_code, base_offset) = produce(&mut client, version, &request);
                    assert_eq!(error_code, 0, "produce v{version}");
                    assert!(base_offset >= 0);
                }
                ApiKey::Fetch => {
                    let request = fetch_request(version, "t", id, 0);
                    let body = client.request(*api, version, &request).unwrap();
                    let response: FetchResponse = decode(body, version);
                    let partition = &response.responses[0].partitions[0];
                    assert_eq!(partition.error_code, 0, "fetch v{version}");
                    assert!(partition.high_watermark >= 1);
                    assert!(!partition.records.as_ref().unwrap().is_empty());
                }
                ApiKey::ListOffsets => {
                    let mut partition = list_offsets_request::ListOffsetsPartition::default();
                    partition.partition_index = 0;
                    partition.timestamp = -1;
                    let mut topic = list_offsets_request::ListOffsetsTopic::default();
                    topic.name = name("t");
                    topic.partitions.push(partition);
                    let mut request = ListOffsetsRequest::default();
                    request.replica_id = BrokerId(-1);
                    request.topics.push(topic);
                    let body = client.request(*api, version, &request).unwrap();
                    let response: ListOffsetsResponse = decode(body, version);
                    let partition = &response.topics[0].partitions[0];
                    assert_eq!(partition.error_code, 0, "list offsets v{version}");
                    assert!(partition.offset >= 1);
                }
                ApiKey::CreateTopics | ApiKey::DeleteTopics => {
                    let topic = format!("temp-{}-v{version}", *api as i16);
                    if *api == ApiKey::CreateTopics {
                        let mut request = CreateTopicsRequest::default();
                        let mut new_topic = create_topics_request::CreatableTopic::default();
                        new_topic.name = name(&topic);
                        new_topic.num_partitions = 2;
                        new_topic.replication_factor = 1;
                        request.topics.push(new_topic);
                        request.timeout_ms = 10_000;
                        let body = client.request(*api, version, &request).unwrap();
                        let response: CreateTopicsResponse = decode(body, version);
                        assert_eq!(response.topics[0].error_code, 0, "create v{version}");
                    } else {
                        create_topics(&mut client, &[&topic], 1, &[]);
                        let mut request = DeleteTopicsRequest::default();
                        if version >= 6 {
                            let mut state = delete_topics_request::DeleteTopicState::default();
                            state.name = Some(name(&topic));
                            request.topics.push(state);
                        } else {
                            request.topic_names.push(name(&topic));
                        }
                        request.timeout_ms = 10_000;
                        let body = client.request(*api, version, &request).unwrap();
                        let response: DeleteTopicsResponse = decode(body, version);
                        assert_eq!(response.responses[0].error_code, 0, "delete v{version}");
                    }
                }
                ApiKey::DescribeConfigs => {
                    let mut resource = describe_configs_request::DescribeConfigsResource::default();
                    resource.resource_type = 2;
                    resource.resource_name = StrBytes::from_static_str("t");
                    let mut request = DescribeConfigsRequest::default();
                    request.resources.push(resource);
                    let body = client.request(*api, version, &request).unwrap();
                    let response: DescribeConfigsResponse = decode(body, version);
                    assert_eq!(response.results[0].error_code, 0);
                    assert!(response.results[0]
                        .configs
                        .iter()
                        .any(|config| config.name.as_str() == "retention.ms"));
                }
                ApiKey::AlterConfigs => {
                    let mut config = alter_configs_request::AlterableConfig::default();
                    config.name = StrBytes::from_static_str("retention.ms");
                    config.value = Some(StrBytes::from_static_str("86400000"));
                    let mut resource = alter_configs_request::AlterConfigsResource::default();
                    resource.resource_type = 2;
                    resource.resource_name = StrBytes::from_static_str("t");
                    resource.configs.push(config);
                    let mut request = AlterConfigsRequest::default();
                    request.resources.push(resource);
                    let body = client.request(*api, version, &request).unwrap();
                    let response: AlterConfigsResponse = decode(body, version);
                    assert_eq!(response.responses[0].error_code, 0);
                }
                ApiKey::IncrementalAlterConfigs => {
                    let mut config = incremental_alter_configs_request::AlterableConfig::default();
                    config.name = StrBytes::from_static_str("retention.bytes");
                    config.config_operation = 0;
                    config.value = Some(StrBytes::from_static_str("1073741824"));
                    let mut resource =
                        incremental_alter_configs_request::AlterConfigsResource::default();
                    resource.resource_type = 2;
                    resource.resource_name = StrBytes::from_static_str("t");
                    resource.configs.push(config);
                    let mut request = IncrementalAlterConfigsRequest::default();
                    request.resources.push(resource);
                    let body = client.request(*api, version, &request).unwrap();
                    let response: IncrementalAlterConfigsResponse = decode(body, version);
                    assert_eq!(response.responses[0].error_code, 0);
                }
                ApiKey::CreatePartitions => {
                    grow_to += 1;
                    let mut topic = create_partitions_request::CreatePartitionsTopic::default();
                    topic.name = name("grow");
                    topic.count = grow_to;
                    let mut request = CreatePartitionsRequest::default();
                    request.topics.push(topic);
                    request.timeout_ms = 10_000;
                    let body = client.request(*api, version, &request).unwrap();
                    let response: CreatePartitionsResponse = decode(body, version);
                    assert_eq!(response.results[0].error_code, 0, "grow v{version}");
                }
                ApiKey::DescribeCluster => {
                    let mut request = DescribeClusterRequest::default();
                    request.endpoint_type = 1;
                    let body = client.request(*api, version, &request).unwrap();
                    let response: DescribeClusterResponse = decode(body, version);
                    assert_eq!(response.error_code, 0);
                    assert_eq!(response.brokers.len(), 1);
                }
                ApiKey::DescribeLogDirs => {
                    let mut request = DescribeLogDirsRequest::default();
                    let mut wanted = describe_log_dirs_request::DescribableLogDirTopic::default();
                    wanted.topic = name("t");
                    wanted.partitions = vec![0, 7];
                    request.topics = Some(vec![wanted]);
                    let body = client.request(*api, version, &request).unwrap();
                    let response: DescribeLogDirsResponse = decode(body, version);
                    let dir = &response.results[0];
                    assert_eq!(dir.error_code, 0, "v{version}");
                    assert_eq!(dir.topics.len(), 1, "only t");
                    let partitions = &dir.topics[0].partitions;
                    assert_eq!(partitions.len(), 1, "partition 7 does not exist");
                    assert!(partitions[0].partition_size > 0, "t-0 holds batches");
                    if version >= 4 {
                        assert!(dir.total_bytes >= dir.usable_bytes && dir.usable_bytes > 0);
                    }
                }
                ApiKey::ListPartitionReassignments => {
                    let request = ListPartitionReassignmentsRequest::default();
                    let body = client.request(*api, version, &request).unwrap();
                    let response: ListPartitionReassignmentsResponse = decode(body, version);
                    assert_eq!(response.error_code, 0);
                    assert!(response.topics.is_empty(), "nothing moves");
                }
                ApiKey::DescribeProducers => {
                    let (producer_id, epoch) = init_producer_id(&mut client, 4);
                    let batch = idempotent_batch(producer_id, epoch, 0, 3);
                    let (error_code, _) =
                        produce(&mut client, 9, &produce_request("t", 0, -1, batch));
                    assert_eq!(error_code, 0);
                    let mut topic = describe_producers_request::TopicRequest::default();
                    topic.name = name("t");
                    topic.partition_indexes = vec![0];
                    let mut request = DescribeProducersRequest::default();
                    request.topics = vec![topic];
                    let body = client.request(*api, version, &request).unwrap();
                    let response: DescribeProducersResponse = decode(body, version);
                    let partition = &response.topics[0].partitions[0];
                    assert_eq!(partition.error_code, 0);
                    let state = partition
                        .active_producers
                        .iter()
                        .find(|state| state.producer_id.0 == producer_id)
                        .expect("the producer is described");
                    assert_eq!(state.last_sequence, 2, "three records from sequence 0");
                    assert_eq!(state.producer_epoch, i32::from(epoch));
                }
                ApiKey::DescribeTopicPartitions => {
                    let mut request = DescribeTopicPartitionsRequest::default();
                    for topic in ["t", "grow", "absent"] {
                        let mut wanted = describe_topic_partitions_request::TopicRequest::default();
                        wanted.name = name(topic);
                        request.topics.push(wanted);
                    }
                    request.response_partition_limit = 1;
                    let body = client.request(*api, version, &request).unwrap();
                    let response: DescribeTopicPartitionsResponse = decode(body, version);
                    // Name order: absent (unknown), grow (first page of one partition).
                    let names: Vec<&str> = response
                        .topics
                        .iter()
                        .map(|t| t.name.as_ref().unwrap().0.as_str())
                        .collect();
                    assert_eq!(names, vec!["absent", "grow"]);
                    assert_eq!(response.topics[0].error_code, 3);
                    assert_eq!(response.topics[1].partitions.len(), 1);
                    assert!(response.next_cursor.is_some(), "more pages follow");
                }
                ApiKey::ElectLeaders => {
                    let mut wanted = elect_leaders_request::TopicPartitions::default();
                    wanted.topic = name("t");
                    wanted.partitions = vec![0];
                    let mut request = ElectLeadersRequest::default();
                    request.topic_partitions = Some(vec![wanted]);
                    request.timeout_ms = 1000;
                    let body = client.request(*api, version, &request).unwrap();
                    let response: ElectLeadersResponse = decode(body, version);
                    let result = &response.replica_election_results[0].partition_result[0];
                    assert_eq!(result.error_code, 84, "v{version}: ELECTION_NOT_NEEDED");
                }
                ApiKey::DeleteRecords => {
                    produce_batches(&mut client, "t", 1);
                    let (_, end, _) = list_offset(&mut client, "t", -1, -1);
                    let delete = |topic: &str, partition: i32, offset: i64| {
                        common::delete_records_at(
                            version,
                            &broker.address,
                            topic,
                            partition,
                            offset,
                        )
                    };
                    assert_eq!(delete("t", 0, -1), (0, end), "v{version}: -1 is the HW");
                    assert_eq!(delete("t", 0, end + 1).0, 1, "past the high watermark");
                    assert_eq!(delete("t", 9, 0).0, 3, "no such partition");
                    assert_eq!(
                        delete("__consumer_offsets", 0, 0).0,
                        17,
                        "internal topics: INVALID_TOPIC_EXCEPTION"
                    );
                }
                ApiKey::SaslHandshake => {
                    // On a PLAINTEXT listener SASL is not in play: ILLEGAL_SASL_STATE, with the
                    // enabled mechanisms listed.
                    let mut request = SaslHandshakeRequest::default();
                    request.mechanism = StrBytes::from_static_str("SCRAM-SHA-256");
                    let body = client.request(*api, version, &request).unwrap();
                    let response: SaslHandshakeResponse = decode(body, version);
                    assert_eq!(response.error_code, 34, "v{version}");
                    assert!(!response.mechanisms.is_empty());
                }
                ApiKey::SaslAuthenticate => {
                    // Without a handshake: ILLEGAL_SASL_STATE, and that connection closes.
                    let mut own = RawClient::connect(&broker.address);
                    let request = SaslAuthenticateRequest::default();
                    let body = own.request(*api, version, &request).unwrap();
                    let response: SaslAuthenticateResponse = decode(body, version);
                    assert_eq!(response.error_code, 34, "v{version}");
                    assert!(own.closes_within(Duration::from_secs(5)));
                }
                ApiKey::AlterUserScramCredentials => {
                    let mut upsertion =
                        alter_user_scram_credentials_request::ScramCredentialUpsertion::default();
                    upsertion.name = StrBytes::from_static_str("probe");
                    upsertion.mechanism = 1;
                    upsertion.iterations = 4096;
                    upsertion.salt = Bytes::from_static(b"0123456789abcdef");
                    upsertion.salted_password = Bytes::from(vec![7u8; 32]);
                    let mut weak = upsertion.clone();
                    weak.name = StrBytes::from_static_str("weak");
                    weak.iterations = 10;
                    let mut request = AlterUserScramCredentialsRequest::default();
                    request.upsertions = vec![upsertion, weak];
                    let body = client.request(*api, version, &request).unwrap();
                    let response: AlterUserScramCredentialsResponse = decode(body, version);
                    let codes: Vec<(String, i16)> = response
                        .results
                        .iter()
                        .map(|r| (r.user.to_string(), r.error_code))
                        .collect();
                    assert_eq!(codes, [("probe".to_string(), 0), ("weak".to_string(), 93)]);
                }
                ApiKey::DescribeUserScramCredentials => {
                    let mut request = DescribeUserScramCredentialsRequest::default();
                    let mut nobody = describe_user_scram_credentials_request::UserName::default();
                    nobody.name = StrBytes::from_static_str("nobody");
                    request.users = Some(vec![nobody]);
                    let body = client.request(*api, version, &request).unwrap();
                    let response: DescribeUserScramCredentialsResponse = decode(body, version);
                    assert_eq!(response.results[0].error_code, 91, "RESOURCE_NOT_FOUND");
                }
                ApiKey::CreateAcls => {
                    let mut creation = create_acls_request::AclCreation::default();
                    creation.resource_type = 2;
                    creation.resource_name = StrBytes::from_string(format!("acl-v{version}"));
                    creation.resource_pattern_type = 3;
                    creation.principal = StrBytes::from_static_str("User:alice");
                    creation.host = StrBytes::from_static_str("*");
                    creation.operation = 3;
                    creation.permission_type = 3;
                    let mut bad = creation.clone();
                    bad.principal = StrBytes::from_static_str("alice");
                    let mut request = CreateAclsRequest::default();
                    request.creations = vec![creation, bad];
                    let body = client.request(*api, version, &request).unwrap();
                    let response: CreateAclsResponse = decode(body, version);
                    let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
                    assert_eq!(codes, [0, 42], "v{version}: the second is INVALID_REQUEST");
                }
                ApiKey::DescribeAcls => {
                    let mut request = DescribeAclsRequest::default();
                    request.resource_type_filter = 2;
                    request.resource_name_filter = Some(StrBytes::from_static_str("acl-v1"));
                    request.pattern_type_filter = 3;
                    request.operation = 1;
                    request.permission_type = 1;
                    // Null is "any" (the codec's default is an empty string, which matches none).
                    request.principal_filter = None;
                    request.host_filter = None;
                    let body = client.request(*api, version, &request).unwrap();
                    let response: DescribeAclsResponse = decode(body, version);
                    assert_eq!(response.error_code, 0);
                    assert_eq!(response.resources.len(), 1, "v{version}: {response:?}");
                    assert_eq!(
                        response.resources[0].acls[0].principal.as_str(),
                        "User:alice"
                    );
                }
                ApiKey::DeleteAcls => {
                    let mut filter = delete_acls_request::DeleteAclsFilter::default();
                    filter.resource_type_filter = 2;
                    filter.resource_name_filter =
                        Some(StrBytes::from_string(format!("acl-v{version}")));
                    filter.pattern_type_filter = 3;
                    filter.operation = 1;
                    filter.permission_type = 1;
                    filter.principal_filter = None;
                    filter.host_filter = None;
                    let mut request = DeleteAclsRequest::default();
                    request.filters = vec![filter];
                    let body = client.request(*api, version, &request).unwrap();
                    let response: DeleteAclsResponse = decode(body, version);
                    assert_eq!(response.filter_results[0].error_code, 0);
                    assert_eq!(
                        response.filter_results[0].matching_acls.len(),
                        1,
                        "v{version}"
                    );
                }
                group_api => exercise_group_api(&mut client, *group_api, version),
            }
        }
    }
}

#[test]
fn bad_requests_get_kafka_error_codes_and_keep_the_connection() {
    let broker = Broker::start(&["--set", "auto.create.topics.enable=false"]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["e"], 1, &[("max.message.bytes", "1000")]);

    let mut corrupt = valid_batch();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let corrupt_message = 2;
    assert_eq!(
        produce(&mut client, 9, &produce_request("e", 0, -1, corrupt)).0,
        corrupt_message
    );

    let mut old_magic = valid_batch();
    old_magic[16] = 1;
    assert_eq!(
        produce(&mut client, 9, &produce_request("e", 0, -1, old_magic)).0,
        43
    );

    // A client's control batch (here one that would move the log start) is the broker's own.
    let control = sluice::protocol::batch::encode_control_batch(
        sluice::protocol::batch::CONTROL_DELETE_RECORDS,
        &0i64.to_be_bytes(),
        1_700_000_000_000,
    );
    assert_eq!(
        produce(&mut client, 9, &produce_request("e", 0, -1, control)).0,
        87,
        "INVALID_RECORD"
    );

    let mut two_batches = valid_batch();
    two_batches.extend_from_slice(&valid_batch());
    assert_eq!(
        produce(&mut client, 9, &produce_request("e", 0, -1, two_batches)).0,
        87
    );

    let big_value = vec![b'x'; 2000];
    let too_large = encode_batch(&[(None, Some(&big_value[..]))], 0);
    assert_eq!(
        produce(&mut client, 9, &produce_request("e", 0, -1, too_large)).0,
        10
    );

    let unknown_topic = produce_request("missing", 0, -1, valid_batch());
    assert_eq!(produce(&mut client, 9, &unknown_topic).0, 3);
    let unknown_partition = produce_request("e", 7, -1, valid_batch());
    assert_eq!(produce(&mut client, 9, &unknown_partition).0, 3);
    let bad_acks = produce_request("e", 0, 5, valid_batch());
    assert_eq!(produce(&mut client, 9, &bad_acks).0, 21);

    // Nothing above was stored: the next good batch gets offset 0.
    assert_eq!(
        produce(&mut client, 9, &produce_request("e", 0, 1, valid_batch())),
        (0, 0)
    );

    let body = client
        .request(
            ApiKey::Fetch,
            12,
            &fetch_request(12, "e", uuid::Uuid::nil(), 1000),
        )
        .unwrap();
    let response: FetchResponse = decode(body, 12);
    assert_eq!(
        response.responses[0].partitions[0].error_code, 1,
        "offset out of range"
    );

    let mut request = MetadataRequest::default();
    let mut wanted = metadata_request::MetadataRequestTopic::default();
    wanted.name = Some(name("bad/name"));
    request.topics = Some(vec![wanted]);
    let body = client.request(ApiKey::Metadata, 9, &request).unwrap();
    let response: MetadataResponse = decode(body, 9);
    assert_eq!(response.topics[0].error_code, 17, "invalid topic name");

    let mut create = CreateTopicsRequest::default();
    let mut zero = create_topics_request::CreatableTopic::default();
    zero.name = name("zero");
    zero.num_partitions = 0;
    zero.replication_factor = 1;
    create.topics.push(zero);
    let body = client.request(ApiKey::CreateTopics, 7, &create).unwrap();
    let response: CreateTopicsResponse = decode(body, 7);
    assert_eq!(response.topics[0].error_code, 37, "invalid partitions");

    // Internal topics belong to the broker.
    let mut create = CreateTopicsRequest::default();
    let mut internal = create_topics_request::CreatableTopic::default();
    internal.name = name("__consumer_offsets");
    internal.num_partitions = 1;
    internal.replication_factor = 1;
    create.topics.push(internal);
    let body = client.request(ApiKey::CreateTopics, 7, &create).unwrap();
    let response: CreateTopicsResponse = decode(body, 7);
    assert_eq!(
        response.topics[0].error_code, 42,
        "clients cannot create internal topics"
    );
    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_static_str("some-group");
    let body = client.request(ApiKey::FindCoordinator, 3, &find).unwrap();
    let found: FindCoordinatorResponse = decode(body, 3);
    assert_eq!(found.error_code, 0, "the broker creates its offsets topic");
    let to_internal = produce_request("__consumer_offsets", 0, -1, valid_batch());
    assert_eq!(
        produce(&mut client, 9, &to_internal).0,
        17,
        "no appends to internal topics"
    );
    let mut delete = DeleteTopicsRequest::default();
    delete.topic_names.push(name("__consumer_offsets"));
    let body = client.request(ApiKey::DeleteTopics, 5, &delete).unwrap();
    let deleted: DeleteTopicsResponse = decode(body, 5);
    assert_eq!(
        deleted.responses[0].error_code, 42,
        "internal topics cannot be deleted"
    );
}

#[test]
fn api_versions_fallback_for_unknown_versions() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker.address);
    // Header v2 with version 99, body as v3 would carry it; the answer is v0-format.
    let mut body = vec![0, 18, 0, 99, 0, 0, 0, 42, 0xff, 0xff, 0];
    body.extend_from_slice(&[2, b'a', 2, b'1', 0]);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    client.send_raw(&frame).unwrap();
    client.correlation_id = 42;
    let body = client.read_response(0).expect("fallback answer");
    let response: ApiVersionsResponse = decode(body, 0);
    assert_eq!(response.error_code, 35);
    assert!(response.api_keys.iter().any(|key| key.api_key == 18));
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let broker = Broker::start(&[]);
    let mut healthy = RawClient::connect(&broker.address);
    create_topics(&mut healthy, &["m"], 1, &[]);

    let mut oversized = RawClient::connect(&broker.address);
    oversized.send_raw(&i32::MAX.to_be_bytes()).unwrap();
    assert!(
        oversized.is_closed(),
        "oversized frame closes the connection"
    );

    let mut unknown_api = RawClient::connect(&broker.address);
    let mut frame = 10i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
    unknown_api.send_raw(&frame).unwrap();
    assert!(unknown_api.is_closed(), "unknown API closes the connection");

    let mut truncated = RawClient::connect(&broker.address);
    let mut frame = 12i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1, 0, 5, b'a', b'b']);
    truncated.send_raw(&frame).unwrap();
    assert!(
        truncated.is_closed(),
        "undecodable produce closes the connection"
    );

    let mut old_version = RawClient::connect(&broker.address);
    let mut frame = 10i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff]);
    old_version.send_raw(&frame).unwrap();
    assert!(
        old_version.is_closed(),
        "unsupported produce version closes the connection"
    );

    // Random frames with plausible headers: the broker answers or closes, never dies.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..200 {
        let mut client = RawClient::connect(&broker.address);
        let length = 8 + (round * 7) % 300;
        let mut body = vec![0u8; length];
        for byte in body.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        let (api, min, max) = SUPPORTED_APIS[round % SUPPORTED_APIS.len()];
        body[0..2].copy_from_slice(&(api as i16).to_be_bytes());
        body[2..4].copy_from_slice(&(min + (round as i16 % (max - min + 1))).to_be_bytes());
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let _ = client.send_raw(&frame);
    }

    // The healthy connection and the broker still work.
    let request = produce_request("m", 0, -1, valid_batch());
    assert_eq!(produce(&mut healthy, 9, &request).0, 0);
    let mut fresh = RawClient::connect(&broker.address);
    let body = fresh
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .unwrap();
    let response: ApiVersionsResponse = decode(body, 3);
    assert_eq!(response.error_code, 0);
}

#[test]
fn forged_array_counts_close_the_connection_without_hurting_the_broker() {
    let broker = Broker::start(&[]);
    // Metadata v1: header (api 3, v1, correlation 1, client id null), topics count 2^31-1.
    for count in [i32::MAX, 0x4000_0000, 0x1000_0000] {
        let mut client = RawClient::connect(&broker.address);
        let mut body = vec![0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
        body.extend_from_slice(&count.to_be_bytes());
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        client.send_raw(&frame).unwrap();
        assert!(
            client.is_closed(),
            "forged count {count:#x} closes the connection"
        );
    }
    // Compact array (Metadata v9, flexible): varint count near u32::MAX.
    let mut client = RawClient::connect(&broker.address);
    let mut body = vec![0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0];
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    client.send_raw(&frame).unwrap();
    assert!(client.is_closed());
    let mut fresh = RawClient::connect(&broker.address);
    let body = fresh
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .unwrap();
    let response: ApiVersionsResponse = decode(body, 3);
    assert_eq!(response.error_code, 0, "broker still serves");
}

fn group(text: &str) -> GroupId {
    GroupId(StrBytes::from_string(text.to_string()))
}

fn join(
    client: &mut RawClient,
    version: i16,
    group_id: &str,
    member_id: &str,
) -> JoinGroupResponse {
    let mut request = JoinGroupRequest::default();
    request.group_id = group(group_id);
    request.session_timeout_ms = 10_000;
    request.rebalance_timeout_ms = 10_000;
    request.member_id = StrBytes::from_string(member_id.to_string());
    request.protocol_type = StrBytes::from_static_str("consumer");
    let mut protocol = join_group_request::JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = Bytes::from_static(b"subscription-bytes");
    request.protocols.push(protocol);
    let body = client
        .request(ApiKey::JoinGroup, version, &request)
        .unwrap();
    decode(body, version)
}

/// Joins (handling MEMBER_ID_REQUIRED) and syncs one member; returns (member id, generation).
fn join_and_sync(client: &mut RawClient, group_id: &str) -> (String, i32) {
    let first = join(client, 5, group_id, "");
    assert_eq!(first.error_code, 79, "member id required");
    let joined = join(client, 5, group_id, first.member_id.as_str());
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.leader, joined.member_id, "only member leads");
    assert_eq!(joined.members.len(), 1);
    assert_eq!(
        &joined.members[0].metadata[..],
        b"subscription-bytes",
        "relayed byte for byte"
    );
    let mut sync = SyncGroupRequest::default();
    sync.group_id = group(group_id);
    sync.generation_id = joined.generation_id;
    sync.member_id = joined.member_id.clone();
    let mut assignment = sync_group_request::SyncGroupRequestAssignment::default();
    assignment.member_id = joined.member_id.clone();
    assignment.assignment = Bytes::from_static(b"assignment-bytes");
    sync.assignments.push(assignment);
    let body = client.request(ApiKey::SyncGroup, 3, &sync).unwrap();
    let synced: SyncGroupResponse = decode(body, 3);
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"assignment-bytes");
    (joined.member_id.to_string(), joined.generation_id)
}

fn commit(client: &mut RawClient, version: i16, group_id: &str, offset: i64) -> i16 {
    let mut partition = offset_commit_request::OffsetCommitRequestPartition::default();
    partition.partition_index = 0;
    partition.committed_offset = offset;
    partition.committed_metadata = Some(StrBytes::from_static_str("note"));
    let mut topic = offset_commit_request::OffsetCommitRequestTopic::default();
    topic.name = name("t");
    topic.partitions.push(partition);
    let mut request = OffsetCommitRequest::default();
    request.group_id = group(group_id);
    request.generation_id_or_member_epoch = -1;
    request.topics.push(topic);
    let body = client
        .request(ApiKey::OffsetCommit, version, &request)
        .unwrap();
    let response: OffsetCommitResponse = decode(body, version);
    response.topics[0].partitions[0].error_code
}

fn exercise_group_api(client: &mut RawClient, api: ApiKey, version: i16) {
    let group_id = format!("g-{}-v{version}", api as i16);
    match api {
        ApiKey::FindCoordinator => {
            let mut request = FindCoordinatorRequest::default();
            if version >= 4 {
                request.coordinator_keys = vec![
                    StrBytes::from_static_str("a"),
                    StrBytes::from_static_str("b"),
                ];
            } else {
                request.key = StrBytes::from_string(group_id);
            }
            let body = client.request(api, version, &request).unwrap();
            let response: FindCoordinatorResponse = decode(body, version);
            if version >= 4 {
                assert_eq!(response.coordinators.len(), 2);
                assert!(response
                    .coordinators
                    .iter()
                    .all(|c| c.error_code == 0 && c.port > 0));
            } else {
                assert_eq!(response.error_code, 0);
                assert!(response.port > 0);
            }
        }
        ApiKey::JoinGroup => {
            let first = join(client, version, &group_id, "");
            let joined = if version >= 4 {
                assert_eq!(first.error_code, 79, "v{version} member id required");
                join(client, version, &group_id, first.member_id.as_str())
            } else {
                first
            };
            assert_eq!(joined.error_code, 0, "join v{version}");
            assert_eq!(joined.generation_id, 1);
            assert_eq!(joined.members.len(), 1);
        }
        ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup | ApiKey::DescribeGroups => {
            let (member_id, generation) = join_and_sync(client, &group_id);
            let member = StrBytes::from_string(member_id);
            let code = match api {
                ApiKey::SyncGroup => {
                    let mut sync = SyncGroupRequest::default();
                    sync.group_id = group(&group_id);
                    sync.generation_id = generation;
                    sync.member_id = member;
                    if version >= 5 {
                        sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
                        sync.protocol_name = Some(StrBytes::from_static_str("range"));
                    }
                    let body = client.request(api, version, &sync).unwrap();
                    let response: SyncGroupResponse = decode(body, version);
                    assert_eq!(&response.assignment[..], b"assignment-bytes");
                    response.error_code
                }
                ApiKey::Heartbeat => {
                    let mut heartbeat = HeartbeatRequest::default();
                    heartbeat.group_id = group(&group_id);
                    heartbeat.generation_id = generation;
                    heartbeat.member_id = member.clone();
                    let body = client.request(api, version, &heartbeat).unwrap();
                    let response: HeartbeatResponse = decode(body, version);
                    heartbeat.generation_id = generation + 5;
                    let body = client.request(api, version, &heartbeat).unwrap();
                    let stale: HeartbeatResponse = decode(body, version);
                    assert_eq!(stale.error_code, 22, "illegal generation");
                    heartbeat.member_id = StrBytes::from_static_str("nobody");
                    let body = client.request(api, version, &heartbeat).unwrap();
                    let unknown: HeartbeatResponse = decode(body, version);
                    assert_eq!(unknown.error_code, 25, "unknown member");
                    response.error_code
                }
                ApiKey::LeaveGroup => {
                    let mut leave = LeaveGroupRequest::default();
                    leave.group_id = group(&group_id);
                    if version >= 3 {
                        let mut identity = leave_group_request::MemberIdentity::default();
                        identity.member_id = member;
                        leave.members.push(identity);
                    } else {
                        leave.member_id = member;
                    }
                    let body = client.request(api, version, &leave).unwrap();
                    let response: LeaveGroupResponse = decode(body, version);
                    if version >= 3 {
                        assert_eq!(response.members[0].error_code, 0);
                    }
                    response.error_code
                }
                _ => {
                    let mut describe = DescribeGroupsRequest::default();
                    describe.groups.push(group(&group_id));
                    let body = client.request(api, version, &describe).unwrap();
                    let response: DescribeGroupsResponse = decode(body, version);
                    let described = &response.groups[0];
                    assert_eq!(described.group_state.as_str(), "Stable");
                    assert_eq!(described.protocol_data.as_str(), "range");
                    assert_eq!(
                        &described.members[0].member_assignment[..],
                        b"assignment-bytes"
                    );
                    described.error_code
                }
            };
            assert_eq!(code, 0, "{api:?} v{version}");
        }
        ApiKey::OffsetCommit => assert_eq!(commit(client, version, &group_id, 5), 0),
        ApiKey::OffsetFetch => {
            assert_eq!(commit(client, 8, &group_id, 7), 0);
            let mut request = OffsetFetchRequest::default();
            if version >= 8 {
                let mut wanted = offset_fetch_request::OffsetFetchRequestGroup::default();
                wanted.group_id = group(&group_id);
                wanted.topics = None;
                request.groups.push(wanted);
            } else {
                request.group_id = group(&group_id);
                let mut topic = offset_fetch_request::OffsetFetchRequestTopic::default();
                topic.name = name("t");
                topic.partition_indexes = vec![0, 1];
                request.topics = Some(vec![topic]);
            }
            let body = client.request(api, version, &request).unwrap();
            let response: OffsetFetchResponse = decode(body, version);
            if version >= 8 {
                let partition = &response.groups[0].topics[0].partitions[0];
                assert_eq!(partition.committed_offset, 7);
                assert_eq!(partition.metadata.as_ref().unwrap().as_str(), "note");
            } else {
                let partitions = &response.topics[0].partitions;
                assert_eq!(partitions[0].committed_offset, 7, "v{version}");
                assert_eq!(partitions[1].committed_offset, -1, "no commit");
            }
        }
        ApiKey::ListGroups => {
            assert_eq!(commit(client, 8, &group_id, 1), 0);
            let body = client
                .request(api, version, &ListGroupsRequest::default())
                .unwrap();
            let response: ListGroupsResponse = decode(body, version);
            assert!(response
                .groups
                .iter()
                .any(|g| g.group_id.0.as_str() == group_id));
        }
        ApiKey::DeleteGroups => {
            assert_eq!(commit(client, 8, &group_id, 1), 0);
            let busy = format!("{group_id}-busy");
            join_and_sync(client, &busy);
            let mut request = DeleteGroupsRequest::default();
            request.groups_names = vec![group(&group_id), group(&busy), group("never-seen")];
            let body = client.request(api, version, &request).unwrap();
            let response: DeleteGroupsResponse = decode(body, version);
            let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
            assert_eq!(codes, vec![0, 68, 69], "deleted, non-empty, not found");
        }
        ApiKey::OffsetDelete => {
            assert_eq!(commit(client, 8, &group_id, 3), 0);
            let mut partition = offset_delete_request::OffsetDeleteRequestPartition::default();
            partition.partition_index = 0;
            let mut topic = offset_delete_request::OffsetDeleteRequestTopic::default();
            topic.name = name("t");
            topic.partitions.push(partition);
            let mut request = OffsetDeleteRequest::default();
            request.group_id = group(&group_id);
            request.topics.push(topic);
            let body = client.request(api, version, &request).unwrap();
            let response: OffsetDeleteResponse = decode(body, version);
            assert_eq!(response.error_code, 0);
            assert_eq!(response.topics[0].partitions[0].error_code, 0);
        }
        ApiKey::InitProducerId => {
            let (producer_id, epoch) = init_producer_id(client, version);
            assert!(producer_id >= 0, "v{version}");
            assert_eq!(epoch, 0);
        }
        ApiKey::OffsetForLeaderEpoch => {
            // Epoch 0 of a topic created in this run: the whole log so far.
            let answer = offset_for_leader_epoch(client, version, "t", -1, 0);
            assert_eq!(answer.error_code, 0, "v{version}");
            assert!(answer.leader_epoch >= 0, "v{version}: {answer:?}");
            assert!(answer.end_offset >= 1, "v{version}: {answer:?}");
            let above = offset_for_leader_epoch(client, version, "t", -1, 1_000);
            assert_eq!(
                (above.leader_epoch, above.end_offset),
                (-1, -1),
                "epoch above all"
            );
            let fenced = offset_for_leader_epoch(client, version, "t", 1_000, 0);
            assert_eq!(fenced.error_code, 75, "UNKNOWN_LEADER_EPOCH");
        }
        ApiKey::DescribeQuorum => {
            let mut partition = describe_quorum_request::PartitionData::default();
            partition.partition_index = 0;
            let mut topic = describe_quorum_request::TopicData::default();
            topic.topic_name = name("__cluster_metadata");
            topic.partitions.push(partition);
            let mut elsewhere = describe_quorum_request::TopicData::default();
            elsewhere.topic_name = name("t");
            elsewhere
                .partitions
                .push(describe_quorum_request::PartitionData::default());
            let mut request = DescribeQuorumRequest::default();
            request.topics = vec![topic, elsewhere];
            let body = client.request(api, version, &request).unwrap();
            let response: DescribeQuorumResponse = decode(body, version);
            let state = &response.topics[0].partitions[0];
            assert_eq!(state.error_code, 0, "v{version}");
            assert_eq!(state.leader_id.0, 0, "one node leads its own quorum");
            assert!(
                state.leader_epoch >= 1 && state.high_watermark >= 1,
                "{state:?}"
            );
            let voters: Vec<i32> = state
                .current_voters
                .iter()
                .map(|v| v.replica_id.0)
                .collect();
            assert_eq!(voters, vec![0]);
            assert_eq!(
                response.topics[1].partitions[0].error_code, 3,
                "only __cluster_metadata-0 is a quorum"
            );
        }
        other => panic!("no test for advertised API {other:?}"),
    }
}

fn offset_for_leader_epoch(
    client: &mut RawClient,
    version: i16,
    topic_name: &str,
    current_leader_epoch: i32,
    leader_epoch: i32,
) -> offset_for_leader_epoch_response::EpochEndOffset {
    let mut partition = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
    partition.partition = 0;
    partition.current_leader_epoch = current_leader_epoch;
    partition.leader_epoch = leader_epoch;
    let mut topic = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
    topic.topic = name(topic_name);
    topic.partitions.push(partition);
    let mut request = OffsetForLeaderEpochRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics.push(topic);
    let body = client
        .request(ApiKey::OffsetForLeaderEpoch, version, &request)
        .unwrap();
    let response: OffsetForLeaderEpochResponse = decode(body, version);
    response.topics[0].partitions[0].clone()
}

fn init_producer_id(client: &mut RawClient, version: i16) -> (i64, i16) {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = 60_000;
    request.producer_id = ProducerId(-1);
    request.producer_epoch = -1;
    let body = client
        .request(ApiKey::InitProducerId, version, &request)
        .unwrap();
    let response: InitProducerIdResponse = decode(body, version);
    assert_eq!(response.error_code, 0);
    (response.producer_id.0, response.producer_epoch)
}

/// An idempotent batch of `count` records starting at sequence `sequence`.
fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, count: usize) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..count).map(|i| format!("v{i}").into_bytes()).collect();
    let rows: Vec<sluice::protocol::batch::Record<'_>> = values
        .iter()
        .map(|value| (None, Some(&value[..])))
        .collect();
    let mut batch = encode_batch(&rows, 1_700_000_000_000);
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

#[test]
fn idempotent_producer_sequences_dedupe_and_fence() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["idem"], 1, &[]);
    let (producer_id, epoch) = init_producer_id(&mut client, 4);
    let (second_id, _) = init_producer_id(&mut client, 4);
    assert_ne!(producer_id, second_id, "fresh ids are unique");

    let first = idempotent_batch(producer_id, epoch, 0, 10);
    assert_eq!(
        produce(
            &mut client,
            9,
            &produce_request("idem", 0, -1, first.clone())
        ),
        (0, 0)
    );
    // The same batch again (a retry): answered with the original offset, not appended.
    assert_eq!(
        produce(&mut client, 9, &produce_request("idem", 0, -1, first)),
        (0, 0)
    );
    let next = idempotent_batch(producer_id, epoch, 10, 5);
    assert_eq!(
        produce(&mut client, 9, &produce_request("idem", 0, -1, next)),
        (0, 10)
    );
    let gap = idempotent_batch(producer_id, epoch, 40, 1);
    assert_eq!(
        produce(&mut client, 9, &produce_request("idem", 0, -1, gap)).0,
        45
    );

    // Epoch bump (KIP-360): the old epoch is fenced.
    let mut bump = InitProducerIdRequest::default();
    bump.producer_id = ProducerId(producer_id);
    bump.producer_epoch = epoch;
    let body = client.request(ApiKey::InitProducerId, 4, &bump).unwrap();
    let bumped: InitProducerIdResponse = decode(body, 4);
    assert_eq!(
        (bumped.producer_id.0, bumped.producer_epoch),
        (producer_id, epoch + 1)
    );
    let new_epoch = idempotent_batch(producer_id, epoch + 1, 0, 1);
    assert_eq!(
        produce(&mut client, 9, &produce_request("idem", 0, -1, new_epoch)),
        (0, 15)
    );
    let stale = idempotent_batch(producer_id, epoch, 15, 1);
    assert_eq!(
        produce(&mut client, 9, &produce_request("idem", 0, -1, stale)).0,
        47
    );

    let body = client
        .request(
            ApiKey::Fetch,
            12,
            &fetch_request(12, "idem", uuid::Uuid::nil(), 0),
        )
        .unwrap();
    let response: FetchResponse = decode(body, 12);
    assert_eq!(
        response.responses[0].partitions[0].high_watermark, 16,
        "no duplicate appended"
    );
}

#[test]
fn producer_state_is_rebuilt_from_the_log_after_kill9() {
    let mut broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["rebuilt"], 1, &[]);
    let (producer_id, epoch) = init_producer_id(&mut client, 4);
    let batches: Vec<Vec<u8>> = (0..3)
        .map(|index| idempotent_batch(producer_id, epoch, index * 4, 4))
        .collect();
    for (index, batch) in batches.iter().enumerate() {
        let request = produce_request("rebuilt", 0, -1, batch.clone());
        assert_eq!(produce(&mut client, 9, &request), (0, index as i64 * 4));
    }
    broker.kill9();
    broker.restart();
    let mut client = RawClient::connect(&broker.address);
    // A retry of the last batch after the crash is still recognised.
    let retry = produce_request("rebuilt", 0, -1, batches[2].clone());
    assert_eq!(produce(&mut client, 9, &retry), (0, 8));
    let next = produce_request(
        "rebuilt",
        0,
        -1,
        idempotent_batch(producer_id, epoch, 12, 1),
    );
    assert_eq!(produce(&mut client, 9, &next), (0, 12));
    let skip = produce_request(
        "rebuilt",
        0,
        -1,
        idempotent_batch(producer_id, epoch, 20, 1),
    );
    assert_eq!(produce(&mut client, 9, &skip).0, 45, "gap after restart");
    // A fresh id after the restart does not reuse one handed out before it.
    let (fresh, _) = init_producer_id(&mut client, 4);
    assert_ne!(fresh, producer_id);
}

/// DeleteRecords moves the log start: ListOffsets earliest and Fetch follow it, a move
/// backwards changes nothing, and it survives kill -9.
#[test]
fn deleted_records_stay_deleted_after_kill9() {
    let mut broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["trimmed"], 1, &[]);
    produce_batches(&mut client, "trimmed", 10);
    assert_eq!(
        common::delete_records(&broker.address, "trimmed", 0, 5),
        (0, 5)
    );
    assert_eq!(list_offset(&mut client, "trimmed", -2, -1).1, 5);
    let fetch_at = |client: &mut RawClient, offset: i64| {
        let body = client
            .request(
                ApiKey::Fetch,
                12,
                &fetch_request(12, "trimmed", uuid::Uuid::nil(), offset),
            )
            .unwrap();
        let response: FetchResponse = decode(body, 12);
        let partition = &response.responses[0].partitions[0];
        (partition.error_code, partition.log_start_offset)
    };
    assert_eq!(
        fetch_at(&mut client, 0).0,
        1,
        "below the start: OFFSET_OUT_OF_RANGE"
    );
    assert_eq!(fetch_at(&mut client, 5), (0, 5));
    assert_eq!(
        common::delete_records(&broker.address, "trimmed", 0, 3),
        (0, 5),
        "never backwards"
    );
    broker.kill9();
    broker.restart();
    let mut client = RawClient::connect(&broker.address);
    assert_eq!(list_offset(&mut client, "trimmed", -2, -1).1, 5);
    assert_eq!(fetch_at(&mut client, 4).0, 1);
    assert_eq!(
        common::delete_records(&broker.address, "trimmed", 0, -1),
        (0, 10)
    );
}

/// `offsets.retention.minutes` has a one-minute floor, so this waits just over a minute.
#[test]
fn offsets_of_an_empty_group_expire_after_the_retention() {
    let broker = Broker::start(&[
        "--set",
        "offsets.retention.minutes=1",
        "--set",
        "offsets.retention.check.interval.ms=500",
    ]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["t"], 1, &[]);
    exercise_group_api(&mut client, ApiKey::FindCoordinator, 3);
    assert_eq!(commit(&mut client, 8, "short-lived", 9), 0);
    let fetch = |client: &mut RawClient| -> i64 {
        let mut request = OffsetFetchRequest::default();
        request.group_id = group("short-lived");
        let mut topic = offset_fetch_request::OffsetFetchRequestTopic::default();
        topic.name = name("t");
        topic.partition_indexes = vec![0];
        request.topics = Some(vec![topic]);
        let body = client.request(ApiKey::OffsetFetch, 7, &request).unwrap();
        let response: OffsetFetchResponse = decode(body, 7);
        response.topics[0].partitions[0].committed_offset
    };
    assert_eq!(fetch(&mut client), 9, "committed");
    std::thread::sleep(std::time::Duration::from_secs(45));
    assert_eq!(fetch(&mut client), 9, "kept within the retention");
    let expired = common::wait_until(std::time::Duration::from_secs(30), || {
        fetch(&mut client) == -1
    });
    assert!(expired, "expired after offsets.retention.minutes");
}

/// Metadata v12's leader epoch of partition 0 of `topic`.
fn metadata_leader_epoch(client: &mut RawClient, topic: &str) -> i32 {
    let mut request = MetadataRequest::default();
    let mut wanted = metadata_request::MetadataRequestTopic::default();
    wanted.name = Some(name(topic));
    request.topics = Some(vec![wanted]);
    let body = client.request(ApiKey::Metadata, 12, &request).unwrap();
    let response: MetadataResponse = decode(body, 12);
    response.topics[0].partitions[0].leader_epoch
}

/// ListOffsets v7 of partition 0: (error, offset, leader epoch).
fn list_offset(
    client: &mut RawClient,
    topic: &str,
    timestamp: i64,
    current: i32,
) -> (i16, i64, i32) {
    let mut partition = list_offsets_request::ListOffsetsPartition::default();
    partition.partition_index = 0;
    partition.timestamp = timestamp;
    partition.current_leader_epoch = current;
    let mut wanted = list_offsets_request::ListOffsetsTopic::default();
    wanted.name = name(topic);
    wanted.partitions.push(partition);
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics.push(wanted);
    let body = client.request(ApiKey::ListOffsets, 7, &request).unwrap();
    let response: ListOffsetsResponse = decode(body, 7);
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.offset, answer.leader_epoch)
}

/// Fetch v12 error code of partition 0 with the given current leader epoch.
fn fetch_error(client: &mut RawClient, topic: &str, current: i32) -> i16 {
    let mut request = fetch_request(12, topic, uuid::Uuid::nil(), 0);
    request.topics[0].partitions[0].current_leader_epoch = current;
    let body = client.request(ApiKey::Fetch, 12, &request).unwrap();
    let response: FetchResponse = decode(body, 12);
    response.responses[0].partitions[0].error_code
}

/// Fetch v12 of partition 0 from `offset` with `last_fetched_epoch`: the diverging epoch and
/// end offset if the broker reports one, and the record bytes returned.
fn fetch_diverging(
    client: &mut RawClient,
    topic: &str,
    offset: i64,
    last_fetched_epoch: i32,
) -> (Option<(i32, i64)>, usize) {
    let mut request = fetch_request(12, topic, uuid::Uuid::nil(), offset);
    request.topics[0].partitions[0].last_fetched_epoch = last_fetched_epoch;
    let body = client.request(ApiKey::Fetch, 12, &request).unwrap();
    let response: FetchResponse = decode(body, 12);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let diverging = &partition.diverging_epoch;
    let reported = (diverging.epoch != -1 || diverging.end_offset != -1)
        .then_some((diverging.epoch, diverging.end_offset));
    (
        reported,
        partition
            .records
            .as_ref()
            .map_or(0, |records| records.len()),
    )
}

fn produce_batches(client: &mut RawClient, topic: &str, count: usize) {
    for _ in 0..count {
        let (error_code, _) = produce(client, 9, &produce_request(topic, 0, -1, valid_batch()));
        assert_eq!(error_code, 0);
    }
}

/// KIP-101/320 on one node: a restart is a new leader epoch (as Kafka's controller elects the
/// returning broker again); the epoch cache remembers where each epoch began, and requests
/// carrying a stale or future epoch are refused with Kafka's codes.
#[test]
fn leader_epochs_advance_across_restarts_and_fence_stale_clients() {
    let mut broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["epochs"], 1, &[]);
    produce_batches(&mut client, "epochs", 3);
    let first = metadata_leader_epoch(&mut client, "epochs");
    assert!(first >= 0);

    broker.restart();
    let mut client = RawClient::connect(&broker.address);
    let second = metadata_leader_epoch(&mut client, "epochs");
    assert_eq!(second, first + 1, "a restart is a new leader epoch");
    produce_batches(&mut client, "epochs", 2);

    assert_eq!(list_offset(&mut client, "epochs", -2, -1), (0, 0, first));
    assert_eq!(
        list_offset(&mut client, "epochs", -1, second),
        (0, 5, second)
    );
    assert_eq!(
        list_offset(&mut client, "epochs", -1, first).0,
        74,
        "FENCED_LEADER_EPOCH"
    );
    assert_eq!(
        list_offset(&mut client, "epochs", -1, second + 1).0,
        75,
        "UNKNOWN_LEADER_EPOCH"
    );

    let old = offset_for_leader_epoch(&mut client, 2, "epochs", second, first);
    assert_eq!(
        (old.error_code, old.leader_epoch, old.end_offset),
        (0, first, 3)
    );
    let current = offset_for_leader_epoch(&mut client, 4, "epochs", -1, second);
    assert_eq!((current.leader_epoch, current.end_offset), (second, 5));
    let fenced = offset_for_leader_epoch(&mut client, 3, "epochs", first, first);
    assert_eq!(fenced.error_code, 74);

    assert_eq!(fetch_error(&mut client, "epochs", first), 74);
    assert_eq!(fetch_error(&mut client, "epochs", second + 1), 75);
    assert_eq!(fetch_error(&mut client, "epochs", second), 0);
    assert_eq!(fetch_error(&mut client, "epochs", -1), 0);

    // KIP-320 in Fetch: a fetcher whose last batch is of the first epoch but which asks past
    // where that epoch ended (offset 3) is told where the logs part, with no records; one
    // whose position agrees gets records.
    assert_eq!(
        fetch_diverging(&mut client, "epochs", 4, first),
        (Some((first, 3)), 0)
    );
    let (diverging, records) = fetch_diverging(&mut client, "epochs", 3, first);
    assert_eq!(diverging, None);
    assert!(records > 0);
    assert_eq!(fetch_diverging(&mut client, "epochs", 4, second).0, None);
    // An epoch newer than any here: as Kafka, no records and the undefined (-1, -1) epoch.
    assert_eq!(
        fetch_diverging(&mut client, "epochs", 4, second + 3),
        (None, 0),
        "an epoch this log never had"
    );

    let checkpoint =
        std::fs::read_to_string(broker.data_dir().join("epochs-0/leader-epoch-checkpoint"))
            .expect("checkpoint file");
    assert_eq!(checkpoint, format!("0\n2\n{first} 0\n{second} 3\n"));
}

/// A data directory as the previous format left it (cluster metadata with a per-topic shard
/// list, no epoch checkpoints) opens: placement becomes replica sets, the data is readable and
/// the epoch cache is rebuilt from the batches.
#[test]
fn data_dir_from_before_replica_sets_opens_and_rebuilds_epoch_caches() {
    let mut broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["legacy"], 2, &[]);
    produce_batches(&mut client, "legacy", 3);
    assert_eq!(
        metadata_leader_epoch(&mut client, "legacy"),
        0,
        "new topics start at 0"
    );
    broker.kill9();

    // Rewrite the metadata the way the previous format wrote it.
    let path = broker.data_dir().join("cluster_metadata.toml");
    let current = sluice::cluster::controller_log::read_metadata(broker.data_dir()).unwrap();
    let legacy = &current.topics["legacy"];
    let shards: Vec<String> = legacy
        .partitions
        .iter()
        .map(|assignment| assignment.replicas[0].shard.0.to_string())
        .collect();
    let text = format!(
        "version = {}\ncluster_id = \"{}\"\nnext_shard = {}\nnext_producer_id = {}\n\n\
         [topics.legacy]\nname = \"legacy\"\ntopic_id = \"{}\"\nplacement = [{}]\n",
        current.version,
        current.cluster_id,
        current.next_shard,
        current.next_producer_id,
        legacy.topic_id,
        shards.join(", ")
    );
    std::fs::write(&path, text).unwrap();
    // That format was the whole state; the metadata log beside it (as an older binary run on
    // this directory would leave it) is moved aside at start.
    for partition in 0..2 {
        let checkpoint = broker
            .data_dir()
            .join(format!("legacy-{partition}/leader-epoch-checkpoint"));
        // A new partition writes none until it needs one (the batches carry their epochs).
        let _ = std::fs::remove_file(checkpoint);
    }

    broker.restart();
    let mut client = RawClient::connect(&broker.address);
    assert_eq!(metadata_leader_epoch(&mut client, "legacy"), 1);
    assert_eq!(list_offset(&mut client, "legacy", -1, -1), (0, 3, 1));
    assert_eq!(list_offset(&mut client, "legacy", -2, -1), (0, 0, 0));
    let request = fetch_request(12, "legacy", uuid::Uuid::nil(), 0);
    let body = client.request(ApiKey::Fetch, 12, &request).unwrap();
    let response: FetchResponse = decode(body, 12);
    let records = response.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(
        records.len(),
        3 * valid_batch().len(),
        "all three batches come back"
    );
    let checkpoint =
        std::fs::read_to_string(broker.data_dir().join("legacy-0/leader-epoch-checkpoint"))
            .expect("rebuilt checkpoint");
    assert_eq!(checkpoint, "0\n2\n0 0\n1 3\n");
    let upgraded = std::fs::read_to_string(&path).unwrap();
    assert!(upgraded.contains("format_version = 2"), "{upgraded}");
    assert!(!upgraded.contains("placement"), "{upgraded}");
}

/// Three frames written before any answer is read: commit 25, commit 50, fetch. Kafka handles
/// a connection's requests one at a time, so the fetch sees 50.
#[test]
fn pipelined_requests_take_effect_in_request_order() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["t"], 1, &[]);
    exercise_group_api(&mut client, ApiKey::FindCoordinator, 3); // creates __consumer_offsets
    for round in 0..20 {
        let group_id = format!("pipelined-{round}");
        let commit = |offset: i64| {
            let mut partition = offset_commit_request::OffsetCommitRequestPartition::default();
            partition.partition_index = 0;
            partition.committed_offset = offset;
            let mut topic = offset_commit_request::OffsetCommitRequestTopic::default();
            topic.name = name("t");
            topic.partitions.push(partition);
            let mut request = OffsetCommitRequest::default();
            request.group_id = group(&group_id);
            request.generation_id_or_member_epoch = -1;
            request.topics.push(topic);
            request
        };
        let mut fetch = OffsetFetchRequest::default();
        fetch.group_id = group(&group_id);
        let mut topic = offset_fetch_request::OffsetFetchRequestTopic::default();
        topic.name = name("t");
        topic.partition_indexes = vec![0];
        fetch.topics = Some(vec![topic]);
        let first = client.correlation_id + 1;
        let mut frames = common::frame(ApiKey::OffsetCommit, 8, first, &commit(25));
        frames.extend(common::frame(
            ApiKey::OffsetCommit,
            8,
            first + 1,
            &commit(50),
        ));
        frames.extend(common::frame(ApiKey::OffsetFetch, 7, first + 2, &fetch));
        client.send_raw(&frames).unwrap();
        for correlation_id in [first, first + 1] {
            client.correlation_id = correlation_id;
            let body = client
                .read_response(ApiKey::OffsetCommit.response_header_version(8))
                .unwrap();
            let response: OffsetCommitResponse = decode(body, 8);
            assert_eq!(response.topics[0].partitions[0].error_code, 0);
        }
        client.correlation_id = first + 2;
        let body = client
            .read_response(ApiKey::OffsetFetch.response_header_version(7))
            .unwrap();
        let response: OffsetFetchResponse = decode(body, 7);
        assert_eq!(
            response.topics[0].partitions[0].committed_offset, 50,
            "round {round}"
        );
    }
}

/// The Metadata request that auto-creates a topic answers UNKNOWN_TOPIC_OR_PARTITION for it, as
/// Kafka does; the next one lists it. A request that may not create never does, nor does Produce.
#[test]
fn auto_creation_happens_on_metadata_only_and_shows_up_one_answer_later() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker.address);
    let ask = |client: &mut RawClient, topic: &str, allow: bool| {
        let mut wanted = metadata_request::MetadataRequestTopic::default();
        wanted.name = Some(name(topic));
        let mut request = MetadataRequest::default();
        request.topics = Some(vec![wanted]);
        request.allow_auto_topic_creation = allow;
        let body = client.request(ApiKey::Metadata, 12, &request).unwrap();
        let response: MetadataResponse = decode(body, 12);
        response.topics.into_iter().next().unwrap()
    };
    let first = ask(&mut client, "made-on-demand", true);
    assert_eq!(first.error_code, 3, "creation started, not listed yet");
    assert!(first.partitions.is_empty());
    let second = ask(&mut client, "made-on-demand", true);
    assert_eq!(second.error_code, 0);
    assert_eq!(second.partitions.len(), 1);
    assert_eq!(ask(&mut client, "not-made", false).error_code, 3);
    assert_eq!(
        ask(&mut client, "not-made", false).error_code,
        3,
        "never created"
    );
    let request = produce_request("produced-to", 0, -1, valid_batch());
    let (error_code, _) = produce(&mut client, 9, &request);
    assert_eq!(error_code, 3, "Produce does not create topics");
    assert_eq!(ask(&mut client, "produced-to", false).error_code, 3);
}

fn answers_api_versions(client: &mut RawClient) -> bool {
    client
        .request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .is_ok()
}

/// `max.connections` and `max.connections.per.ip`: past either, a new connection is closed at
/// once; a freed slot is usable again.
#[test]
fn connection_limits_close_new_connections_cleanly() {
    let broker = Broker::start(&["--set", "max.connections=3"]);
    let mut held: Vec<RawClient> = (0..3)
        .map(|_| RawClient::connect(&broker.address))
        .collect();
    for client in &mut held {
        assert!(answers_api_versions(client));
    }
    let mut refused = RawClient::connect(&broker.address);
    assert!(
        refused.closes_within(Duration::from_secs(5)),
        "the 4th is closed"
    );
    held.pop();
    let admitted = common::wait_until(Duration::from_secs(10), || {
        let mut client = RawClient::connect(&broker.address);
        !client.closes_within(Duration::from_millis(300)) && answers_api_versions(&mut client)
    });
    assert!(admitted, "a freed slot is usable again");

    let broker = Broker::start(&["--set", "max.connections.per.ip=2"]);
    let mut held: Vec<RawClient> = (0..2)
        .map(|_| RawClient::connect(&broker.address))
        .collect();
    for client in &mut held {
        assert!(answers_api_versions(client));
    }
    let mut refused = RawClient::connect(&broker.address);
    assert!(
        refused.closes_within(Duration::from_secs(5)),
        "a 3rd from 127.0.0.1"
    );
}

/// `connections.max.idle.ms` closes a silent connection and spares a busy one;
/// `socket.request.read.timeout.ms` cuts off a client trickling a request.
#[test]
fn idle_and_trickling_connections_are_closed() {
    let broker = Broker::start(&[
        "--set",
        "connections.max.idle.ms=1000",
        "--set",
        "socket.request.read.timeout.ms=500",
    ]);
    let mut idle = RawClient::connect(&broker.address);
    assert!(answers_api_versions(&mut idle));
    let mut busy = RawClient::connect(&broker.address);
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            answers_api_versions(&mut busy),
            "a busy connection stays open"
        );
    }
    assert!(
        idle.closes_within(Duration::from_secs(5)),
        "idle for over a second"
    );

    let mut trickling = RawClient::connect(&broker.address);
    // A frame announcing 100 bytes, of which one arrives.
    trickling.send_raw(&[0, 0, 0, 100, 0]).unwrap();
    assert!(trickling.closes_within(Duration::from_secs(5)));
}

/// `group.max.size` refuses a member past it with GROUP_MAX_SIZE_REACHED; the session-timeout
/// bounds are Kafka's configurable keys.
#[test]
fn group_bounds_are_configurable_with_kafka_errors() {
    let broker = Broker::start(&[
        "--set",
        "group.max.size=1",
        "--set",
        "group.initial.rebalance.delay.ms=0",
    ]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["t"], 1, &[]);
    exercise_group_api(&mut client, ApiKey::FindCoordinator, 3);
    join_and_sync(&mut client, "full");
    let mut second = RawClient::connect(&broker.address);
    let refused = join(&mut second, 5, "full", "");
    assert_eq!(refused.error_code, 81, "GROUP_MAX_SIZE_REACHED");

    let broker = Broker::start(&["--set", "group.min.session.timeout.ms=20000"]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["t"], 1, &[]);
    exercise_group_api(&mut client, ApiKey::FindCoordinator, 3);
    let short = join(&mut client, 5, "short-session", "");
    assert_eq!(
        short.error_code, 26,
        "INVALID_SESSION_TIMEOUT: 10 s is below the minimum"
    );

    let broker = Broker::start(&["--set", "group.max.session.timeout.ms=8000"]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["t"], 1, &[]);
    exercise_group_api(&mut client, ApiKey::FindCoordinator, 3);
    let long = join(&mut client, 5, "long-session", "");
    assert_eq!(
        long.error_code, 26,
        "INVALID_SESSION_TIMEOUT: 10 s is above the maximum"
    );

    // One offsets partition: every group on one coordinator shard, which keeps one group;
    // pending member ids are capped at group.max.size, the earliest evicted.
    let broker = Broker::start(&[
        "--set",
        "offsets.topic.num.partitions=1",
        "--set",
        "groups.per.shard.max=1",
        "--set",
        "group.max.size=1",
        "--set",
        "group.initial.rebalance.delay.ms=0",
    ]);
    let mut first = RawClient::connect(&broker.address);
    create_topics(&mut first, &["t"], 1, &[]);
    exercise_group_api(&mut first, ApiKey::FindCoordinator, 3);
    let pending = join(&mut first, 5, "kept", "");
    assert_eq!(pending.error_code, 79, "member id required");
    let mut other = RawClient::connect(&broker.address);
    assert_eq!(
        join(&mut other, 5, "second-group", "").error_code,
        15,
        "COORDINATOR_NOT_AVAILABLE past groups.per.shard.max"
    );
    let newer = join(&mut other, 5, "kept", "");
    assert_eq!(newer.error_code, 79, "a second pending member id");
    assert_eq!(
        join(&mut first, 5, "kept", pending.member_id.as_str()).error_code,
        25,
        "UNKNOWN_MEMBER_ID: the earliest pending id was evicted at the cap"
    );
    assert_eq!(
        join(&mut other, 5, "kept", newer.member_id.as_str()).error_code,
        0,
        "the newer pending member joins"
    );
}

fn free_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: statvfs writes into a struct we own; `path` is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stat) }, 0);
    stat.f_bavail as u64 * stat.f_frsize as u64
}

/// Below `log.dir.free.bytes.min` produce is refused with a retriable KAFKA_STORAGE_ERROR while
/// reads keep working; when space returns, produce resumes by itself (no restart).
#[test]
fn produce_pauses_below_the_free_space_floor_and_resumes() {
    let parent = tempfile::tempdir().unwrap();
    let floor = free_bytes(parent.path()).saturating_sub(512 << 20);
    let broker = Broker::start(&["--set", &format!("log.dir.free.bytes.min={floor}")]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["space"], 1, &[]);
    let batch = || produce_request("space", 0, -1, valid_batch());
    assert_eq!(produce(&mut client, 9, &batch()).0, 0);

    // Take 1 GiB of the same file system (fallocate: instant, no data written).
    let filler_path = broker.data_dir().join("../filler");
    let filler = std::fs::File::create(&filler_path).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate on a file we own.
    let allocated = unsafe { libc::fallocate(filler.as_raw_fd(), 0, 0, 1 << 30) };
    assert_eq!(allocated, 0, "fallocate");
    let refused = common::wait_until(Duration::from_secs(10), || {
        produce(&mut client, 9, &batch()).0 == 56
    });
    assert!(refused, "KAFKA_STORAGE_ERROR below the floor");
    let latest = list_offset(&mut client, "space", -1, -1).1;
    assert!(latest >= 1, "reads keep working");
    assert_eq!(produce(&mut client, 9, &batch()).0, 56);
    assert_eq!(
        list_offset(&mut client, "space", -1, -1).1,
        latest,
        "nothing appended"
    );
    assert_eq!(fetch_error(&mut client, "space", -1), 0);

    drop(filler);
    std::fs::remove_file(&filler_path).unwrap();
    let resumed = common::wait_until(Duration::from_secs(10), || {
        produce(&mut client, 9, &batch()).0 == 0
    });
    assert!(resumed, "produce resumes when space returns");
}

/// A partition's directory appears with its first write: creating partitions costs no disk
/// syncs until they are used, and nothing is lost across a restart either way.
#[test]
fn partition_directories_appear_with_the_first_write() {
    let mut broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["lazy"], 2, &[]);
    assert!(!broker.data_dir().join("lazy-0").exists());
    assert_eq!(
        produce(
            &mut client,
            9,
            &produce_request("lazy", 0, -1, valid_batch())
        )
        .0,
        0
    );
    assert!(broker.data_dir().join("lazy-0/partition.metadata").exists());
    assert!(!broker.data_dir().join("lazy-1").exists(), "never written");

    broker.restart();
    let mut client = RawClient::connect(&broker.address);
    assert_eq!(list_offset(&mut client, "lazy", -1, -1).1, 1);
    assert_eq!(
        produce(
            &mut client,
            9,
            &produce_request("lazy", 1, -1, valid_batch())
        )
        .0,
        0
    );
    let mut request = fetch_request(12, "lazy", uuid::Uuid::nil(), 0);
    request.topics[0].partitions[0].partition = 1;
    let body = client.request(ApiKey::Fetch, 12, &request).unwrap();
    let response: FetchResponse = decode(body, 12);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 1);
}

/// Metadata changes live in the controller's log until a snapshot takes them in: topics
/// created, deleted and reconfigured survive kill -9 whether they are in the snapshot, the log
/// after it, or both (a tiny snapshot threshold makes snapshots frequent), and the log is
/// compacted after each snapshot.
#[test]
fn metadata_changes_survive_kill9_across_log_snapshots() {
    let mut broker = Broker::start(&[
        "--set",
        "metadata.log.max.record.bytes.between.snapshots=2048",
    ]);
    let mut client = RawClient::connect(&broker.address);
    let names: Vec<String> = (0..40).map(|index| format!("m{index}")).collect();
    for name in &names {
        create_topics(&mut client, &[name.as_str()], 2, &[]);
    }
    create_topics(
        &mut client,
        &["configured"],
        1,
        &[("retention.ms", "12345")],
    );
    let mut delete = DeleteTopicsRequest::default();
    for gone in ["m3", "m17"] {
        delete.topic_names.push(name(gone));
    }
    let body = client.request(ApiKey::DeleteTopics, 5, &delete).unwrap();
    let deleted: DeleteTopicsResponse = decode(body, 5);
    assert!(deleted.responses.iter().all(|r| r.error_code == 0));

    let snapshot = sluice::cluster::metadata::ClusterMetadata::from_toml(
        &std::fs::read_to_string(broker.data_dir().join("cluster_metadata.toml")).unwrap(),
    )
    .unwrap();
    assert!(
        snapshot.raft_index > 1,
        "a snapshot was taken after the threshold"
    );
    let log_bytes = std::fs::metadata(broker.data_dir().join("controller.log"))
        .unwrap()
        .len();
    assert!(
        log_bytes < 16 * 2048,
        "the log is compacted after each snapshot ({log_bytes} bytes)"
    );
    broker.kill9();
    broker.restart();

    let mut client = RawClient::connect(&broker.address);
    let mut all_topics = MetadataRequest::default();
    all_topics.topics = None;
    let body = client.request(ApiKey::Metadata, 12, &all_topics).unwrap();
    let response: MetadataResponse = decode(body, 12);
    let mut found: Vec<String> = response
        .topics
        .iter()
        .filter(|topic| topic.error_code == 0)
        .map(|topic| topic.name.as_ref().unwrap().to_string())
        .collect();
    found.sort();
    let mut expected: Vec<String> = names
        .iter()
        .filter(|name| *name != "m3" && *name != "m17")
        .cloned()
        .chain(["configured".to_string()])
        .collect();
    expected.sort();
    assert_eq!(found, expected);
    assert!(response
        .topics
        .iter()
        .all(|topic| topic.partitions.len() == 2
            || topic.name.as_ref().map(|n| n.as_str()) == Some("configured")));
    let mut describe = DescribeConfigsRequest::default();
    let mut resource = describe_configs_request::DescribeConfigsResource::default();
    resource.resource_type = 2;
    resource.resource_name = StrBytes::from_static_str("configured");
    resource.configuration_keys = Some(vec![StrBytes::from_static_str("retention.ms")]);
    describe.resources.push(resource);
    let body = client
        .request(ApiKey::DescribeConfigs, 4, &describe)
        .unwrap();
    let described: DescribeConfigsResponse = decode(body, 4);
    let value = described.results[0].configs[0].value.as_ref().unwrap();
    assert_eq!(value.as_str(), "12345");
    // Each start commits a leader-epoch bump through the log; partitions from before and after
    // the snapshot all moved to epoch 1.
    assert_eq!(metadata_leader_epoch(&mut client, "m0"), 1);
    assert_eq!(metadata_leader_epoch(&mut client, "m39"), 1);
}

/// `min.insync.replicas` above the in-sync replicas a partition has (one, until partitions
/// replicate) refuses acks=all with NOT_ENOUGH_REPLICAS, as Kafka does; acks=1 still appends.
#[test]
fn acks_all_below_min_insync_replicas_is_refused() {
    let broker = Broker::start(&[]);
    let mut client = RawClient::connect(&broker.address);
    create_topics(&mut client, &["strict"], 1, &[("min.insync.replicas", "2")]);
    create_topics(&mut client, &["relaxed"], 1, &[]);
    let all = produce_request("strict", 0, -1, valid_batch());
    assert_eq!(produce(&mut client, 9, &all).0, 19, "NOT_ENOUGH_REPLICAS");
    let one = produce_request("strict", 0, 1, valid_batch());
    assert_eq!(produce(&mut client, 9, &one), (0, 0), "acks=1 appends");
    let fine = produce_request("relaxed", 0, -1, valid_batch());
    assert_eq!(produce(&mut client, 9, &fine), (0, 0));
}
