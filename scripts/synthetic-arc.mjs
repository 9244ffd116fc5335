// Writes N (default 100) four-choice items in the ARC layout with random words (question 12-25
// words, choices 1-4 words) to stdout: input for timing `openelm eval`, not a benchmark of accuracy.
// usage: node scripts/synthetic-arc.mjs [N] > arc100.jsonl
const n = Number(process.argv[2] ?? 100);
const words = 'the a plant animal water energy light heat earth sun moon rock soil air cell body force motion sound change weather cloud rain river ocean forest seed root leaf flower fruit insect bird fish metal magnet electric circuit gas liquid solid'.split(' ');
let s = 7;
const r = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = (n) => Array.from({ length: n }, () => words[Math.floor(r() * words.length)]).join(' ');
const lines = [];
for (let i = 0; i < n; i++) {
  const q = pick(12 + Math.floor(r() * 14));
  const text = Array.from({ length: 4 }, () => pick(1 + Math.floor(r() * 4)));
  lines.push(JSON.stringify({ id: `x${i}`, question: q.charAt(0).toUpperCase() + q.slice(1) + '?', choices: { text, label: ['A', 'B', 'C', 'D'] }, answerKey: 'ABCD'[i % 4] }));
}
process.stdout.write(lines.join('\n') + '\n');
