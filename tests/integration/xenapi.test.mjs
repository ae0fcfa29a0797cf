// xenapid driven by Xen Orchestra's connector, the npm `xen-api` package:
// it logs in, loads records and calls methods the way XO does.
// Run with `node --test` after tests/integration/setup-node.sh.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

let createClient, getTaskResult
try {
  ;({ createClient } = await import('xen-api'))
  getTaskResult = (await import('xen-api/_getTaskResult.mjs')).default
} catch (error) {
  throw new Error(`the npm package xen-api is missing: run tests/integration/setup-node.sh (${error.message})`)
}

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(HERE, '..', '..')
const BINARY = path.join(process.env.XENAPID_BUILD_DIR ?? path.join(ROOT, 'build'), 'xenapid')
const SCHEMA = JSON.parse(fs.readFileSync(path.join(ROOT, 'xapi', 'schema', 'classes.json'), 'utf8'))
const PASSWORD = 'node-test-password'
const REF = /^OpaqueRef:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

function canConnect(port) {
  return new Promise(resolve => {
    const sk = net.connect(port, '127.0.0.1')
    sk.once('connect', () => {
      sk.destroy()
      resolve(true)
    })
    sk.once('error', () => resolve(false))
  })
}

// One xenapid on its own state dir and port, like harness.py's Daemon.
class Daemon {
  // tls: also serve HTTPS (listen_tls, a generated self-signed certificate), and use it
  async start({ tls = false } = {}) {
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xenapid-node-'))
    this.port = await freePort()
    this.tlsPort = tls ? await freePort() : undefined
    this.log = path.join(this.tmp, 'xenapid.log')
    const config = path.join(this.tmp, 'xenapid.conf')
    fs.writeFileSync(
      config,
      [
        `listen = 127.0.0.1:${this.port}`,
        `state_dir = ${path.join(this.tmp, 'var')}`,
        `unix_socket = ${path.join(this.tmp, 'xapi.sock')}`,
        `accounts_file = ${path.join(this.tmp, 'accounts')}`,
        'backend = sim',
        'auth_fail_delay_ms = 100',
        ...(tls ? [`listen_tls = 127.0.0.1:${this.tlsPort}`] : []),
        '',
      ].join('\n')
    )
    const out = fs.openSync(this.log, 'a')
    const env = { ...process.env, XENAPID_ROOT_PASSWORD: PASSWORD }
    delete env.NOTIFY_SOCKET
    delete env.JOURNAL_STREAM
    this.proc = spawn(BINARY, ['--config', config, '--foreground'], { env, stdio: ['ignore', out, out] })
    fs.closeSync(out)
    this.exited = new Promise(resolve => this.proc.once('exit', (code, signal) => resolve({ code, signal })))
    const deadline = Date.now() + 20e3
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) break
      if ((await canConnect(this.port)) && (!tls || (await canConnect(this.tlsPort)))) return this
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    throw new Error('xenapid did not start:\n' + fs.readFileSync(this.log, 'utf8'))
  }

  get url() {
    return this.tlsPort ? `https://127.0.0.1:${this.tlsPort}` : `http://127.0.0.1:${this.port}`
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM')
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 15e3)
      await this.exited
      clearTimeout(timer)
    }
    fs.rmSync(this.tmp, { recursive: true, force: true })
  }
}

function client(daemon, opts = {}) {
  return createClient({
    url: daemon.url,
    auth: { user: 'root', password: PASSWORD },
    allowUnauthorized: true,
    watchEvents: false, // event.from belongs to the VM lifecycle issue
    ...opts,
  })
}

function assertComplete(type, record) {
  const fields = SCHEMA.classes[type].fields.filter(f => f.type !== '<class> record').map(f => f.name)
  assert.deepEqual(Object.keys(record).sort(), [...fields].sort(), `${type} record is complete`)
}

function vmRecord(over = {}) {
  return {
    name_label: 'xo-vm',
    name_description: '',
    user_version: 1,
    is_a_template: false,
    affinity: 'OpaqueRef:NULL',
    memory_static_max: 268435456,
    memory_dynamic_max: 268435456,
    memory_dynamic_min: 268435456,
    memory_static_min: 134217728,
    VCPUs_params: {},
    VCPUs_max: 1,
    VCPUs_at_startup: 1,
    actions_after_shutdown: 'destroy',
    actions_after_reboot: 'restart',
    actions_after_crash: 'restart',
    PV_bootloader: '',
    PV_kernel: '',
    PV_ramdisk: '',
    PV_args: '',
    PV_bootloader_args: '',
    PV_legacy_args: '',
    HVM_boot_policy: 'BIOS order',
    HVM_boot_params: { order: 'cd' },
    platform: {},
    PCI_bus: '',
    other_config: {},
    recommendations: '',
    ...over,
  }
}

describe('xen-api (Xen Orchestra) against xenapid', () => {
  const daemon = new Daemon()
  let xapi

  before(async () => {
    await daemon.start()
    xapi = client(daemon)
    await xapi.connect()
  })

  after(async () => {
    if (xapi) await xapi.disconnect()
    await daemon.stop()
  })

  test('connects and finds the pool', async () => {
    assert.equal(xapi.status, 'connected')
    assert.match(xapi.sessionId, REF)
    assert.match(xapi.pool.$ref, REF)
    assert.match(xapi.pool.master, REF)
    assertComplete('pool', xapi.pool)
  })

  test('reads all records of pool, host and VM', async () => {
    const pools = await xapi.getAllRecords('pool')
    assert.equal(pools.length, 1)
    assert.equal(pools[0].$ref, xapi.pool.$ref)

    const hosts = await xapi.getAllRecords('host')
    assert.equal(hosts.length, 1)
    const host = hosts[0]
    assert.equal(host.$ref, xapi.pool.master)
    assertComplete('host', host)
    assert.equal(host.hostname, os.hostname())
    assert.equal(host.API_version_major, 2) // JSON-RPC: a number
    assert.equal(host.enabled, true)
    assert.ok('restrict_dmc' in host.license_params)
    assert.equal(host.host_CPUs.length, os.cpus().length)

    const vms = await xapi.getAllRecords('VM')
    assert.ok(vms.length >= 1)
    for (const vm of vms) {
      assertComplete('VM', vm)
      assert.match(vm.$ref, REF)
    }
    const dom0 = vms.find(vm => vm.is_control_domain)
    assert.ok(dom0, 'the control domain is listed')
    assert.equal(dom0.$ref, host.control_domain)
    assert.equal(dom0.power_state, 'Running')
    assert.equal(dom0.domid, 0)

    const byRecord = await xapi.getRecord('host', host.$ref)
    assert.equal(byRecord.uuid, host.uuid)
    const byUuid = await xapi.getRecordByUuid('VM', dom0.uuid)
    assert.equal(byUuid.$ref, dom0.$ref)
  })

  test('calls methods', async () => {
    const vm = await xapi.call('VM.create', vmRecord({ name_label: 'from-xo' }))
    assert.match(vm, REF)
    assert.equal(await xapi.call('VM.get_name_label', vm), 'from-xo')
    await xapi.call('VM.set_name_label', vm, 'renamed by xo')
    assert.equal(await xapi.getField('VM', vm, 'name_label'), 'renamed by xo')
    await xapi.call('VM.add_tags', vm, 'xo')
    await xapi.call('VM.add_to_other_config', vm, 'xo:key', 'value')
    await xapi.call('VM.set_actions_after_crash', vm, 'DESTROY')
    const rec = await xapi.getRecord('VM', vm)
    assert.deepEqual(rec.tags, ['xo'])
    assert.deepEqual(rec.other_config, { 'xo:key': 'value' })
    assert.equal(rec.actions_after_crash, 'destroy')
    assert.equal(rec.VCPUs_max, 1)
    assert.equal(rec.power_state, 'Halted')
    assert.ok((await xapi.call('VM.get_all')).includes(vm))
    const where = await xapi.call('VM.get_all_records_where', 'field "name__label"="renamed by xo"')
    assert.deepEqual(Object.keys(where), [vm])
    await xapi.call('VM.destroy', vm)
    assert.ok(!(await xapi.call('VM.get_all')).includes(vm))
  })

  test('reports XenAPI errors with their code and params', async () => {
    await assert.rejects(xapi.call('VM.get_record', 'OpaqueRef:nope'), error => {
      assert.equal(error.code, 'HANDLE_INVALID')
      assert.deepEqual(error.params, ['VM', 'OpaqueRef:nope'])
      return true
    })
    await assert.rejects(xapi.call('VM.no_such_method'), { code: 'MESSAGE_METHOD_UNKNOWN' })
    const vm = await xapi.call('VM.create', vmRecord())
    await assert.rejects(xapi.call('VM.add_to_other_config', vm, 'k', 'v').then(() =>
      xapi.call('VM.add_to_other_config', vm, 'k', 'v')), { code: 'MAP_DUPLICATE_KEY' })
    await xapi.call('VM.destroy', vm)
  })

  test('Async calls return a task whose result XO can parse', async () => {
    const task = await xapi.call('Async.VM.create', vmRecord({ name_label: 'async from xo' }))
    assert.match(task, REF)
    let record
    for (let i = 0; i < 500; i++) {
      record = await xapi.getRecord('task', task)
      if (record.status !== 'pending') break
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    assert.equal(record.status, 'success')
    const vm = await getTaskResult(record)
    assert.match(vm, REF)
    assert.equal(await xapi.call('VM.get_name_label', vm), 'async from xo')
    await xapi.call('task.destroy', task)

    const failed = await xapi.call('Async.VM.destroy', 'OpaqueRef:gone')
    for (let i = 0; i < 500; i++) {
      record = await xapi.getRecord('task', failed)
      if (record.status !== 'pending') break
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    await assert.rejects(getTaskResult(record), { code: 'HANDLE_INVALID' })
  })

  test('refuses a wrong password', async () => {
    const bad = client(daemon, { auth: { user: 'root', password: 'wrong' } })
    await assert.rejects(bad.connect(), { code: 'SESSION_AUTHENTICATION_FAILED' })
  })

  test('a second client sees the same objects', async () => {
    const other = client(daemon, { transport: 'json-rpc' })
    await other.connect()
    try {
      assert.equal(other.pool.$ref, xapi.pool.$ref)
      const vm = await xapi.call('VM.create', vmRecord({ name_label: 'shared' }))
      assert.equal(await other.call('VM.get_name_label', vm), 'shared')
    } finally {
      await other.disconnect()
    }
  })

  // XO's XML-RPC transport POSTs to /xmlrpc: like xapi, xenapid serves XML-RPC on every POST path but /jsonrpc.
  test('XML-RPC transport', async () => {
    const x = client(daemon, { transport: 'xml-rpc' })
    await x.connect()
    try {
      const hosts = await x.getAllRecords('host')
      assert.equal(hosts.length, 1)
      assert.equal(hosts[0].API_version_major, '2') // XML-RPC: an untyped string
    } finally {
      await x.disconnect()
    }
  })
})

// Xen Orchestra's way of working: load every record, then follow event.from and
// keep its object cache in step. Every change made through the API must show up.
describe('xen-api follows event.from', () => {
  let daemon, xapi

  before(async () => {
    daemon = await new Daemon().start()
    xapi = client(daemon, { watchEvents: true, debounce: 0 })
    await xapi.connect()
    await xapi.objectsFetched
  })

  after(async () => {
    if (xapi) await xapi.disconnect()
    if (daemon) await daemon.stop()
  })

  async function until(what, pred, ms = 10e3) {
    const deadline = Date.now() + ms
    while (Date.now() < deadline) {
      const v = pred()
      if (v) return v
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    assert.fail(`timed out waiting for ${what}`)
  }

  test('the initial load holds every object', () => {
    assert.ok(xapi.pool)
    const hosts = Object.values(xapi.objects.all).filter(o => o.$type === 'host')
    assert.equal(hosts.length, 1)
    const templates = Object.values(xapi.objects.all).filter(o => o.$type === 'VM' && o.is_a_template)
    assert.ok(templates.length >= 2, 'the default templates are there')
  })

  test('creation, changes, a lifecycle and destruction all arrive', async () => {
    const ref = await xapi.call('VM.create', vmRecord({ name_label: 'followed', PV_kernel: '/boot/vmlinuz' }))
    const vm = await until('the new VM', () => xapi.getObjectByRef(ref, undefined))
    assert.equal(vm.name_label, 'followed')
    assert.equal(vm.power_state, 'Halted')

    await xapi.call('VM.set_name_label', ref, 'renamed')
    await until('the rename', () => xapi.getObjectByRef(ref).name_label === 'renamed')

    await xapi.call('VM.start', ref, false, false)
    await until('Running', () => xapi.getObjectByRef(ref).power_state === 'Running')
    const metrics = xapi.getObjectByRef(ref).metrics
    await until('the metrics', () => xapi.getObjectByRef(metrics, undefined)?.state?.includes('running'))

    await xapi.call('VM.clean_shutdown', ref)
    await until('Halted', () => xapi.getObjectByRef(ref).power_state === 'Halted')

    await xapi.call('VM.destroy', ref)
    await until('the removal', () => xapi.getObjectByRef(ref, undefined) === undefined)
    assert.equal(xapi.getObjectByRef(metrics, undefined), undefined, 'its metrics went with it')
  })

  test('async tasks are followed to their end', async () => {
    const ref = await xapi.call('VM.create', vmRecord({ name_label: 'async-followed' }))
    const clone = await xapi.callAsync('VM.clone', ref, 'async-clone')
    assert.match(clone, REF)
    await until('the clone', () => xapi.getObjectByRef(clone, undefined)?.name_label === 'async-clone')
  })
})

// Xen Orchestra connects to XenServer hosts over HTTPS, usually trusting their
// self-signed certificates (allowUnauthorized); both transports.
describe('xen-api over HTTPS', () => {
  const daemon = new Daemon()

  before(async () => {
    await daemon.start({ tls: true })
  })

  after(async () => {
    await daemon.stop()
  })

  for (const transport of ['json-rpc', 'xml-rpc']) {
    test(`${transport}: connects, reads records, calls methods`, async () => {
      assert.match(daemon.url, /^https:/)
      const x = client(daemon, { transport })
      await x.connect()
      try {
        assert.equal(x.status, 'connected')
        assert.match(x.pool.master, REF)
        const hosts = await x.getAllRecords('host')
        assert.equal(hosts.length, 1)
        assertComplete('host', hosts[0])
        const vm = await x.call('VM.create', vmRecord({ name_label: `over-tls-${transport}` }))
        assert.equal(await x.call('VM.get_name_label', vm), `over-tls-${transport}`)
      } finally {
        await x.disconnect()
      }
    })
  }

  test('the self-signed certificate is refused without allowUnauthorized', async () => {
    const x = client(daemon, { allowUnauthorized: false })
    await assert.rejects(x.connect(), err => /self[- ]signed|certificate/i.test(String(err?.cause ?? err)))
    await x.disconnect().catch(() => {})
  })
})
