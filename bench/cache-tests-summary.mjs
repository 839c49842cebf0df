// Summarises the results JSON of the http-cache-tests CLI (bench/cache-tests.sh).
//
//   node bench/cache-tests-summary.mjs PKG RESULTS.json [TITLE]
//   node bench/cache-tests-summary.mjs --compare PKG A.json B.json
//
// PKG is the unpacked package (its tests/ give each test's kind and
// dependencies). A test's outcome is classified as cache-tests.fyi shows it
// (lib/display.mjs determineTestResult): pass; fail (a required test),
// not passed (optimal), yes / no (informational, "check"); setup, retry and
// dependency (a test it depends on did not pass) apart. "Required failures"
// are the required tests that failed (not setup, retry or dependency), as
// cache-tests.fyi counts them (the bundled squid.json gives its 22).
// --compare prints the tests whose outcome differs between two runs and
// exits 1 if any does.
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const args = process.argv.slice(2)
const compare = args[0] === '--compare'
if (compare) args.shift()
const pkg = path.resolve(args[0])
const load = async f => (await import(pathToFileURL(path.join(pkg, f)).href)).default
const suites = await load('tests/index.mjs')
suites.push(await load('tests/surrogate-control.mjs')) // as cli.mjs does

const tests = new Map()
for (const suite of suites) {
  for (const t of suite.tests) {
    if (t.browser_only === true) continue // as client/runner.mjs does without a browser cache
    tests.set(t.id, t)
  }
}
const kindOf = t => (t.kind === undefined ? 'required' : t.kind)

function outcomes (results) {
  const memo = new Map()
  const outcome = id => {
    if (memo.has(id)) return memo.get(id)
    const t = tests.get(id)
    const r = results[id]
    let o
    if (r === undefined) {
      o = 'untested'
    } else if ((t.depends_on || []).some(d => outcome(d) !== 'pass' && outcome(d) !== 'yes')) {
      o = 'dependency'
    } else if (r !== true && r[0] === 'Setup') {
      o = r[1] === 'retry' ? 'retry' : 'setup'
    } else if (kindOf(t) === 'check') {
      o = r === true ? 'yes' : 'no'
    } else if (r === true) {
      o = 'pass'
    } else {
      o = kindOf(t) === 'optimal' ? 'not passed' : 'fail'
    }
    memo.set(id, o)
    return o
  }
  const all = new Map()
  for (const id of tests.keys()) all.set(id, outcome(id))
  return all
}

const read = f => JSON.parse(fs.readFileSync(f, 'utf8'))
// A message without the run's test UUIDs and server clock.
const message = r => (r === true || r === undefined ? '' : String(r[1]).replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>'))

if (compare) {
  const [a, b] = [read(args[1]), read(args[2])]
  const [oa, ob] = [outcomes(a), outcomes(b)]
  let differ = 0
  for (const id of tests.keys()) {
    if (oa.get(id) === ob.get(id)) continue
    differ++
    console.log(`  differs: ${id} (${kindOf(tests.get(id))}): ${oa.get(id)} ${JSON.stringify(message(a[id]))} / ${ob.get(id)} ${JSON.stringify(message(b[id]))}`)
  }
  process.exit(differ ? 1 : 0)
}

const results = read(args[1])
const o = outcomes(results)
const count = (kind, what) => [...tests.keys()].filter(id => kindOf(tests.get(id)) === kind && o.get(id) === what).length
const total = kind => [...tests.values()].filter(t => kindOf(t) === kind).length
const passed = [...tests.keys()].filter(id => results[id] === true).length
const apart = kind => ['setup', 'retry', 'dependency', 'untested'].map(w => `${w} ${count(kind, w)}`).join(', ')
const required = [...tests.keys()].filter(id => kindOf(tests.get(id)) === 'required')
const requiredFailures = required.filter(id => o.get(id) === 'fail')
const requiredOther = required.filter(id => o.get(id) !== 'fail' && o.get(id) !== 'pass')

if (args[2]) console.log(args[2])
console.log(`  passed ${passed} of ${tests.size}`)
console.log(`  required      ${String(total('required')).padStart(3)}: passed ${count('required', 'pass')}, failed ${count('required', 'fail')}; ${apart('required')}`)
console.log(`  optimal       ${String(total('optimal')).padStart(3)}: passed ${count('optimal', 'pass')}, not passed ${count('optimal', 'not passed')}; ${apart('optimal')}`)
console.log(`  informational ${String(total('check')).padStart(3)}: yes ${count('check', 'yes')}, no ${count('check', 'no')}; ${apart('check')}`)
console.log(`  required failures (failed, as cache-tests.fyi counts them): ${requiredFailures.length}`)
for (const id of requiredFailures) console.log(`    ${id}: ${message(results[id])}`)
if (requiredOther.length) console.log(`  required tests not passed otherwise: ${requiredOther.length}`)
for (const id of requiredOther) console.log(`    ${id} [${o.get(id)}] ${message(results[id])}`)
