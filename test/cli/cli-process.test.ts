// The CLI as one process in a pipeline: complete output to a slow reader, a quiet end when the
// reader goes away, SIGINT/SIGTERM mid-generation, and nothing left behind in TMPDIR.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fixtureDir } from '../helpers.ts';
import { leftovers, runCli, type CliRun } from '../cli-spawn.ts';

const tiny = fixtureDir('tiny-elm');
const root = mkdtempSync(join(tmpdir(), 'openelm-process-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshTmp = () => mkdtempSync(join(root, `run${n++}-`));

/** No native crash, no stack trace, and the run's TMPDIR is empty again. */
function clean(r: CliRun, tmp: string, what: string): void {
  assert.equal(r.timedOut, false, `${what}: timed out`);
  assert.equal(r.signal, null, `${what}: ended by signal ${r.signal}\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^ {4}at /m, `${what}: stack trace on stderr:\n${r.stderr}`);
  assert.deepEqual(leftovers(tmp), [], `${what}: files left in TMPDIR`);
}

// 256 positions x 512 f32 logits printed in full: about 5 MB of JSON.
const longIds = Array.from({ length: 256 }, (_, i) => 1 + ((i * 7) % 500)).join(',');

test('a slow pipe reader gets all of a multi-MB --json result, and it parses', async () => {
  const tmp = freshTmp();
  const r = await runCli(['logits', '--model', tiny, '--input-ids', longIds, '--all-positions', '--json', '--dtype', 'f32', '--gemv', 'rows'], {
    tmp,
    // Read a chunk, then look away for a while: the writer finishes long before the reader does.
    drive: (child) =>
      child.stdout.on('data', () => {
        child.stdout.pause();
        setTimeout(() => child.stdout.resume(), 15);
      }),
  });
  clean(r, tmp, 'logits');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.length > 2_000_000, `${r.stdout.length} bytes`);
  const out = JSON.parse(r.stdout) as { logits: number[][] };
  assert.equal(out.logits.length, 256);
  for (const row of out.logits) assert.equal(row.length, 512);
});

test('a reader that closes early (| head -c 5) ends the run quietly: exit 0, no EPIPE trace', async () => {
  for (let i = 0; i < 3; i++) {
    const tmp = freshTmp();
    let got = '';
    const r = await runCli(['generate', '--model', tiny, '--input-ids', '1,5,9', '--max-new-tokens', '250', '--gemv', 'rows'], {
      tmp,
      drive: (child) =>
        child.stdout.on('data', (d: string) => {
          got += d;
          if (got.length >= 5) child.stdout.destroy();
        }),
    });
    clean(r, tmp, `head ${i}`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  }
});

for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  test(`${sig} mid-generation stops it, frees the GPU and exits ${code} (repeated)`, async () => {
    for (let i = 0; i < (sig === 'SIGINT' ? 4 : 2); i++) {
      const tmp = freshTmp();
      let sent = false;
      const r = await runCli(['generate', '--model', tiny, '--input-ids', '1,5,9', '--max-new-tokens', '250', '--gemv', 'rows'], {
        tmp,
        drive: (child) =>
          child.stdout.on('data', () => {
            if (!sent) child.kill(sig);
            sent = true;
          }),
      });
      assert.ok(sent, 'the run printed tokens');
      clean(r, tmp, `${sig} ${i}`);
      assert.equal(r.code, code, r.stderr);
      assert.equal(r.stderr, `openelm: interrupted by ${sig}\n`);
      assert.ok(r.stdout.trim().split(' ').length < 250, 'generation stopped early');
    }
  });
}
