#!/usr/bin/env node
// Deaggregates Kinesis records with aws-kinesis-agg, the AWS Labs deaggregation module for node
// (what Lambda consumers use; it follows the KCL's reading of the KPL format). kinesis-proxy's
// tests and load benchmark read a stream back and pipe its records through this script, so
// what the proxy aggregates is checked by a real consumer library, not only by its own decoder.
//
// stdin: one JSON object per line, a Kinesis record as GetRecords returns it:
//     {"shard_id", "sequence_number", "partition_key", "explicit_hash_key"?, "data_base64"}
// (GetRecords does not return the explicit hash key; the field is accepted for completeness.)
// stdout: one JSON object per user record, in input order, then in sub-sequence order:
//     {"shard_id", "sequence_number", "sub_sequence_number", "partition_key",
//      "explicit_hash_key", "data_base64"}
// A record that is not aggregated passes through as one user record whose sub_sequence_number
// is null (the library does this itself). Absent keys are null.
//
// Checksums are verified (computeChecksums = true). Any record the library cannot deaggregate
// (bad checksum, bad protobuf) or any malformed input line stops the script with exit code 1 and
// a message on stderr naming the line: a test must fail, not lose records quietly.
//
// Known quirk of aws-kinesis-agg 4.2.8: a user record written without an explicit hash key, in an
// aggregate whose explicit hash key table is not empty, comes back with the table's first entry
// (protobufjs gives the absent index its default 0, and the library does not check presence).
// This script reports what the library says; the KCL (Java) checks presence.
'use strict'

const readline = require('readline')
const agg = require('aws-kinesis-agg')

function fail(message) {
  process.stderr.write(`deaggregate.js: ${message}\n`)
  process.exitCode = 1
  process.stdin.destroy()
}

function optional(value) {
  return value === undefined || value === null ? null : value
}

function deaggregateLine(line, lineNumber) {
  let input
  try {
    input = JSON.parse(line)
  } catch (e) {
    throw new Error(`line ${lineNumber}: not JSON: ${e.message}`)
  }
  for (const field of ['shard_id', 'sequence_number', 'partition_key', 'data_base64']) {
    if (typeof input[field] !== 'string') {
      throw new Error(`line ${lineNumber}: "${field}" must be a string`)
    }
  }
  // The library's own record shape (what a Lambda event's `kinesis` object holds).
  const kinesisRecord = {
    partitionKey: input.partition_key,
    explicitPartitionKey: input.explicit_hash_key ?? undefined,
    sequenceNumber: input.sequence_number,
    data: input.data_base64,
  }
  let failure = null
  let userRecords = null
  // Synchronous despite the callback; on a per-record error the callback may be called twice,
  // so the first error is kept.
  agg.deaggregateSync(kinesisRecord, true, (err, records) => {
    if (err && !failure) failure = err
    if (!err && records) userRecords = records
  })
  if (failure || !userRecords) {
    const reason = failure ? failure.message || String(failure) : 'no result'
    throw new Error(`line ${lineNumber} (shard ${input.shard_id}, sequence number ` +
      `${input.sequence_number}): aws-kinesis-agg could not deaggregate it: ${reason}`)
  }
  return userRecords.map((record) => JSON.stringify({
    shard_id: input.shard_id,
    sequence_number: record.sequenceNumber,
    sub_sequence_number: optional(record.subSequenceNumber),
    partition_key: record.partitionKey,
    explicit_hash_key: optional(record.explicitPartitionKey),
    data_base64: record.data,
  }) + '\n').join('')
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
let lineNumber = 0
lines.on('line', (line) => {
  lineNumber += 1
  if (process.exitCode || line.trim() === '') return
  try {
    process.stdout.write(deaggregateLine(line, lineNumber))
  } catch (e) {
    fail(e.message)
    lines.close()
  }
})
