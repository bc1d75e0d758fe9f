#!/usr/bin/env node
// Compile the slamon contracts with the pinned solc (npm `solc`, solcjs) through the standard
// JSON interface and write the artefacts to slamon/data/<Contract>.json.
//
// Usage (from the repository root, after `npm ci`):
//   node contracts/compile.mjs            write slamon/data/SLACompensation.json, TestToken.json
//   node contracts/compile.mjs --check    exit 1 if the committed artefacts are stale
//   node contracts/compile.mjs --stdout [--sources a.sol,b.sol]
//                                         print {"ContractName": artefact, ...} as JSON on stdout
//
// Artefact: contractName, sourceName, abi, bytecode, deployedBytecode (0x hex), compiler
// {name, version}, settings (the exact standard-JSON settings), sources {path: sha256},
// sourcesSha256 (sha256 over "path\n<sha256 of content>\n" for each source, sorted by path).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_SOURCES = ['contracts/SLACompensation.sol', 'contracts/TestToken.sol'];
const OUT_DIR = join(ROOT, 'slamon', 'data');
export const SETTINGS = {
  evmVersion: 'cancun',
  viaIR: true,
  optimizer: { enabled: true, runs: 1000 },
  metadata: { bytecodeHash: 'none', appendCBOR: false },
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};

function sha256(data) {
  return createHash('sha256').update(data).digest('hex');
}

function loadSolc() {
  try {
    return require('solc');
  } catch {
    process.stderr.write('solc not installed: run `npm ci` at the repository root\n');
    process.exit(2);
  }
}

export function compile(sourcePaths) {
  const solc = loadSolc();
  const sources = {};
  const hashes = {};
  for (const p of [...sourcePaths].sort()) {
    const content = readFileSync(join(ROOT, p), 'utf8');
    sources[p] = { content };
    hashes[p] = sha256(content);
  }
  const input = { language: 'Solidity', sources, settings: SETTINGS };
  // Library imports (@openzeppelin/contracts, pinned exactly in package.json) resolve from
  // node_modules; their hashes join the artefact so a library upgrade makes it stale.
  const findImports = (path) => {
    const file = join(ROOT, 'node_modules', path);
    if (!path.startsWith('@openzeppelin/') || !existsSync(file)) return { error: `not found: ${path}` };
    const contents = readFileSync(file, 'utf8');
    hashes[`node_modules/${path}`] = sha256(contents);
    return { contents };
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  let failed = false;
  for (const e of output.errors ?? []) {
    // OpenZeppelin's transient-storage note is about its own reentrancy guard, which clears it
    if (e.severity === 'warning' && e.sourceLocation?.file?.startsWith('@openzeppelin/')) continue;
    process.stderr.write(`${e.formattedMessage ?? e.message}\n`);
    if (e.severity === 'error') failed = true;
  }
  if (failed) {
    process.stderr.write('compilation failed\n');
    process.exit(1);
  }
  const combined = sha256(Object.keys(hashes).sort().map((p) => `${p}\n${hashes[p]}\n`).join(''));
  const version = solc.version();
  const artefacts = {};
  for (const [sourceName, contracts] of Object.entries(output.contracts ?? {})) {
    if (!(sourceName in sources)) continue; // a library's own contracts get no artefact
    for (const [contractName, c] of Object.entries(contracts)) {
      artefacts[contractName] = {
        contractName,
        sourceName,
        abi: c.abi,
        bytecode: `0x${c.evm.bytecode.object}`,
        deployedBytecode: `0x${c.evm.deployedBytecode.object}`,
        compiler: { name: 'solc', version },
        settings: SETTINGS,
        sources: hashes,
        sourcesSha256: combined,
      };
    }
  }
  return artefacts;
}

function main(argv) {
  let sourcePaths = DEFAULT_SOURCES;
  const i = argv.indexOf('--sources');
  if (i >= 0) sourcePaths = argv[i + 1].split(',').map((p) => relative(ROOT, join(process.cwd(), p)));
  const artefacts = compile(sourcePaths);
  if (argv.includes('--stdout')) {
    process.stdout.write(`${JSON.stringify(artefacts)}\n`);
    return 0;
  }
  let stale = 0;
  for (const [name, a] of Object.entries(artefacts)) {
    const path = join(OUT_DIR, `${name}.json`);
    const text = `${JSON.stringify(a, null, 2)}\n`;
    if (argv.includes('--check')) {
      if (!existsSync(path) || readFileSync(path, 'utf8') !== text) {
        process.stderr.write(`stale artefact: ${relative(ROOT, path)}\n`);
        stale += 1;
      }
    } else {
      writeFileSync(path, text);
      const size = (a.deployedBytecode.length - 2) / 2;
      process.stderr.write(`wrote ${relative(ROOT, path)} (runtime ${size} bytes)\n`);
    }
  }
  return stale ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));
