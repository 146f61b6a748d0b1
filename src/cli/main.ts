#!/usr/bin/env node
import { runCli } from './program.js';

// runCli reports every problem itself (stderr) and returns the exit code.
const code = await runCli(process.argv.slice(2));
if (code !== undefined) process.exitCode = code;
