#!/usr/bin/env node
// Local Kinesis emulator for kinesis-proxy's tests and scripts/run-local.sh.
//
// Starts kinesalite (LevelDB on disk, so memory stays flat however many records go in), creates the
// streams asked for, waits until they are ACTIVE and then prints exactly one line to stdout:
//
//     READY http://127.0.0.1:<port>
//
// Usage: node server.js --port PORT --path DIR [--stream NAME:SHARDS ...] [--no-stdin-watch]
//                       [--remove-on-exit DIR] [--shard-limit N]
//
//   --port PORT           port on 127.0.0.1; 0 picks a free one (default 0)
//   --path DIR            LevelDB folder, created if missing (required)
//   --stream NAME:N       create stream NAME with N shards (repeatable); an existing stream is kept
//   --no-stdin-watch      do not exit when stdin closes
//   --remove-on-exit DIR  delete DIR (recursively) when exiting: throwaway data of a test run
//   --shard-limit N       total shards kinesalite allows over all streams (default 1000)
//
// Lifetime: the process exits when its stdin closes, so a parent (a test binary) that exits or dies
// never leaves an emulator behind. That watch is only armed when stdin is a pipe or a socket: a
// terminal or /dev/null (what a backgrounded shell job gets) would end it at once or never, so there
// the parent must stop it with SIGTERM/SIGINT instead (scripts/run-local.sh does).
'use strict'

const fs = require('fs')
const http = require('http')

function usage(message) {
  process.stderr.write(`kinesalite server.js: ${message}\n` +
    'usage: node server.js --port PORT --path DIR [--stream NAME:SHARDS ...] [--no-stdin-watch]\n' +
    '                      [--remove-on-exit DIR] [--shard-limit N]\n')
  process.exit(2)
}

function parseArgs(argv) {
  const opts = {port: 0, path: null, streams: [], stdinWatch: true, removeOnExit: null, shardLimit: 1000}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`)
      return argv[++i]
    }
    switch (arg) {
      case '--port': {
        const port = Number(value())
        if (!Number.isInteger(port) || port < 0 || port > 65535) usage('--port must be 0..65535')
        opts.port = port
        break
      }
      case '--path':
        opts.path = value()
        break
      case '--stream': {
        const spec = value()
        const match = /^([a-zA-Z0-9_.-]{1,128}):([1-9][0-9]*)$/.exec(spec)
        if (!match) usage(`--stream wants NAME:SHARDS, got '${spec}'`)
        opts.streams.push({name: match[1], shards: Number(match[2])})
        break
      }
      case '--remove-on-exit':
        opts.removeOnExit = value()
        break
      case '--shard-limit': {
        const limit = Number(value())
        if (!Number.isInteger(limit) || limit < 1) usage('--shard-limit must be a positive integer')
        opts.shardLimit = limit
        break
      }
      case '--no-stdin-watch':
        opts.stdinWatch = false
        break
      case '--help':
      case '-h':
        usage('help')
        break
      default:
        usage(`unknown argument '${arg}'`)
    }
  }
  if (!opts.path) usage('--path is required')
  return opts
}

function log(message) {
  process.stderr.write(`kinesalite: ${message}\n`)
}

// Exit when the parent goes away. Only a pipe or a socket on stdin means "a parent holds the other
// end"; a TTY or /dev/null (a character device) or a file says nothing about the parent's life.
function watchStdin() {
  let stat
  try {
    stat = fs.fstatSync(0)
  } catch (e) {
    return
  }
  if (!stat.isFIFO() && !stat.isSocket()) return
  const bye = () => process.exit(0)
  process.stdin.on('end', bye)
  process.stdin.on('close', bye)
  process.stdin.on('error', bye)
  process.stdin.on('data', () => {}) // discard anything sent; reading is what lets 'end' fire
  process.stdin.resume()
}

// One Kinesis JSON call against our own listener. kinesalite checks only that an Authorization
// header carrying Credential, SignedHeaders and Signature exists, plus X-Amz-Date (or Date); it
// never verifies the signature.
function call(port, operation, body) {
  const payload = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/',
      headers: {
        'X-Amz-Target': `Kinesis_20131202.${operation}`,
        'Content-Type': 'application/x-amz-json-1.1',
        'Content-Length': Buffer.byteLength(payload),
        'X-Amz-Date': new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, ''),
        'Authorization': 'AWS4-HMAC-SHA256 Credential=local/20260101/us-west-2/kinesis/aws4_request, ' +
          'SignedHeaders=host, Signature=0',
      },
    }, (res) => {
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        let json = null
        try { json = text ? JSON.parse(text) : {} } catch (e) { /* keep null */ }
        resolve({status: res.statusCode, json, text})
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(payload)
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function ensureStream(port, {name, shards}) {
  const created = await call(port, 'CreateStream', {StreamName: name, ShardCount: shards})
  if (created.status !== 200) {
    const type = created.json && created.json.__type
    if (type !== 'ResourceInUseException') {
      throw new Error(`CreateStream ${name} failed: HTTP ${created.status} ${created.text}`)
    }
  }
  const deadline = Date.now() + 30000
  for (;;) {
    const described = await call(port, 'DescribeStream', {StreamName: name})
    const status = described.json && described.json.StreamDescription &&
      described.json.StreamDescription.StreamStatus
    if (described.status === 200 && status === 'ACTIVE') return
    if (Date.now() > deadline) {
      throw new Error(`stream ${name} not ACTIVE after 30 s: HTTP ${described.status} ${described.text}`)
    }
    await sleep(25)
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  if (opts.removeOnExit) {
    const dir = opts.removeOnExit
    process.on('exit', () => {
      try { fs.rmSync(dir, {recursive: true, force: true}) } catch (e) { /* best effort */ }
    })
  }
  if (opts.stdinWatch) watchStdin()
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => process.exit(0))

  fs.mkdirSync(opts.path, {recursive: true})

  // kinesalite puts this region (default us-east-1) in stream ARNs; match the project's default.
  if (!process.env.AWS_REGION && !process.env.AWS_DEFAULT_REGION) process.env.AWS_REGION = 'us-west-2'

  let kinesalite
  try {
    kinesalite = require('kinesalite')
  } catch (e) {
    log(`cannot load the kinesalite package (${e.message}); run scripts/setup-emulator.sh`)
    process.exit(3)
  }

  const server = kinesalite({
    createStreamMs: 50,
    deleteStreamMs: 50,
    updateStreamMs: 50,
    shardLimit: opts.shardLimit,
    path: opts.path,
  })
  // Node closes idle keep-alive connections after 5 s by default, which races with clients that
  // pool connections for longer (hyper, under the AWS SDK, keeps them 90 s): a request sent on a
  // connection the server is just closing fails with a reset. Outlive the clients' pools instead.
  server.keepAliveTimeout = 120000
  server.headersTimeout = 121000
  server.on('error', (err) => {
    log(`server error: ${err.message}`)
    process.exit(1)
  })
  await new Promise((resolve) => server.listen(opts.port, '127.0.0.1', resolve))
  const port = server.address().port

  for (const stream of opts.streams) {
    await ensureStream(port, stream)
    log(`stream ${stream.name} ACTIVE`)
  }

  process.stdout.write(`READY http://127.0.0.1:${port}\n`)
}

main().catch((err) => {
  log(`failed: ${err.stack || err}`)
  process.exit(1)
})
