// The `openelm` command as installed (dist/cli.js): the library's CLI (src/cli/main.ts) plus the
// benchmark harness's `bench`. It is composed here because the library never imports the harness.
import { runCli } from '../src/cli/main.ts';
import { benchCommand } from './command.ts';

runCli(process.argv.slice(2), { bench: benchCommand });
