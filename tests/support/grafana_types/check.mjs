// Type-checks a Grafana dashboard JSON against Grafana's own Dashboard type, in each pinned version of
// @grafana/schema (package.json): the JSON is written out as a TypeScript literal assigned to the type,
// so every string keeps its literal type (an import of the .json would widen them and hide errors).
//   node tests/support/grafana_types/check.mjs grafana/ollama-monitoring.json
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const here = dirname(fileURLToPath(import.meta.url));
const board = JSON.parse(readFileSync(process.argv[2], "utf8"));
const versions = Object.keys(JSON.parse(readFileSync(join(here, "package.json"), "utf8")).devDependencies).filter((name) => name.startsWith("grafana-schema-"));
const scratch = mkdtempSync(join(tmpdir(), "grafana-types-"));
let failed = 0;
for (const version of versions) {
  const file = join(scratch, `${version}.ts`);
  writeFileSync(file, `import type { Dashboard } from "${join(here, "node_modules", version)}";\nexport const dashboard: Dashboard = ${JSON.stringify(board, null, 2)};\n`);
  const program = ts.createProgram([file], { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, skipLibCheck: true });
  const diagnostics = ts.getPreEmitDiagnostics(program);
  for (const diagnostic of diagnostics) {
    const where = diagnostic.file ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start ?? 0) : { line: 0 };
    console.log(`${version} line ${where.line + 1}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, " ")}`);
  }
  failed += diagnostics.length;
  console.log(`${version}: ${diagnostics.length} error(s)`);
}
process.exit(failed ? 1 : 0);
