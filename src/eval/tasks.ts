// The zero-shot multiple-choice tasks of OpenELM's model card, built exactly as lm-evaluation-
// harness builds them: each task's preprocessing, prompt (doc_to_text), choices (doc_to_choice)
// and gold index (doc_to_target), from one JSON line of the public dataset. The target delimiter
// is a space: a request is (context, " " + choice), or for winogrande (option's context,
// " " + the sentence after the blank).

export const TASK_NAMES = ['arc_easy', 'arc_challenge', 'boolq', 'hellaswag', 'piqa', 'sciq', 'winogrande'] as const;
export type TaskName = (typeof TASK_NAMES)[number];

export function isTaskName(s: string): s is TaskName {
  return (TASK_NAMES as readonly string[]).includes(s);
}

/** One text request: the log-likelihood of `continuation` after `context`. */
export interface TextRequest {
  context: string;
  continuation: string;
}

/** A built item: one request per choice, the gold index, and each choice's text (for acc_norm). */
export interface McItem {
  requests: TextRequest[];
  gold: number;
  /** The harness divides by len(choice) (code points) of these for acc_norm. */
  choices: string[];
}

export interface TaskSpec {
  name: TaskName;
  /** Whether the harness reports acc_norm for the task (all report acc). */
  accNorm: boolean;
  /** The JSON fields of one line, for --help and errors. */
  layout: string;
  /** Where the harness takes the data from (a Hugging Face dataset and split). */
  source: string;
  build(doc: Record<string, unknown>): McItem;
}

/** A data line that does not have the layout a task expects. */
export class DataError extends Error {}

// Python's str.isspace characters: strip()/lstrip() in the harness's templates remove these.
const PY_SPACE = '\\t\\n\\v\\f\\r \\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const LEADING = new RegExp(`^[${PY_SPACE}]+`, 'u');
const TRAILING = new RegExp(`[${PY_SPACE}]+$`, 'u');
export const pyLstrip = (s: string): string => s.replace(LEADING, '');
export const pyStrip = (s: string): string => s.replace(LEADING, '').replace(TRAILING, '');

/** Python's str.capitalize(): the first character upper case, the rest lower case. */
export function pyCapitalize(s: string): string {
  const [first, ...rest] = [...s];
  return first === undefined ? '' : first.toUpperCase() + rest.join('').toLowerCase();
}

/** HellaSwag's cleaning (WikiHow artifacts): strip, " [title]" -> ". ", drop [bracketed] text, "  " -> " ". */
export function hellaswagPreprocess(text: string): string {
  // Python's `.` in the harness's regex matches anything but \n (JavaScript's also stops at \r etc.).
  return pyStrip(text).replaceAll(' [title]', '. ').replace(/\[[^\n]*?\]/g, '').replaceAll('  ', ' ');
}

function str(doc: Record<string, unknown>, key: string): string {
  const v = doc[key];
  if (typeof v !== 'string') throw new DataError(`field "${key}" must be a string, got ${describe(v)}`);
  return v;
}

function strList(v: unknown, key: string, min = 2): string[] {
  if (!Array.isArray(v) || v.length < min || !v.every((x) => typeof x === 'string')) {
    throw new DataError(`field "${key}" must be a list of at least ${min} strings, got ${describe(v)}`);
  }
  return v as string[];
}

/** An integer label given as a number or a numeric string (HellaSwag stores "0".."3"). */
function index(v: unknown, key: string, n: number): number {
  const k = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k >= n) throw new DataError(`field "${key}" must be an index in [0, ${n}), got ${describe(v)}`);
  return k;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing (missing)';
  const s = JSON.stringify(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

/** Requests for the usual layout: one context, the choices as continuations after a space. */
function choicesAfter(context: string, choices: string[], gold: number): McItem {
  return { requests: choices.map((c) => ({ context, continuation: ` ${c}` })), gold, choices };
}

const arc = (name: 'arc_easy' | 'arc_challenge', subset: string): TaskSpec => ({
  name,
  accNorm: true,
  layout: '{"question": str, "choices": {"text": [str, ...], "label": [str, ...]}, "answerKey": str}',
  source: `allenai/ai2_arc, subset ${subset}, split test`,
  build(doc) {
    const choices = doc.choices as Record<string, unknown> | undefined;
    if (typeof choices !== 'object' || choices === null) throw new DataError(`field "choices" must be an object {"text": [...], "label": [...]}, got ${describe(choices)}`);
    const text = strList(choices.text, 'choices.text');
    const labels = strList(choices.label, 'choices.label');
    if (labels.length !== text.length) throw new DataError(`"choices.label" has ${labels.length} entries but "choices.text" has ${text.length}`);
    const key = str(doc, 'answerKey');
    const gold = labels.indexOf(key);
    if (gold < 0) throw new DataError(`"answerKey" ${describe(key)} is not one of the labels ${describe(labels)}`);
    return choicesAfter(`Question: ${str(doc, 'question')}\nAnswer:`, text, gold);
  },
});

export const TASKS: Record<TaskName, TaskSpec> = {
  arc_easy: arc('arc_easy', 'ARC-Easy'),
  arc_challenge: arc('arc_challenge', 'ARC-Challenge'),
  boolq: {
    name: 'boolq',
    accNorm: false,
    layout: '{"passage": str, "question": str, "label": 0|1} (super_glue; google/boolq\'s "answer": true|false also works)',
    source: 'aps/super_glue (or super_glue), subset boolq, split validation',
    build(doc) {
      const label = doc.label !== undefined ? index(doc.label, 'label', 2) : typeof doc.answer === 'boolean' ? Number(doc.answer) : index(doc.label, 'label', 2);
      return choicesAfter(`${str(doc, 'passage')}\nQuestion: ${str(doc, 'question')}?\nAnswer:`, ['no', 'yes'], label);
    },
  },
  hellaswag: {
    name: 'hellaswag',
    accNorm: true,
    layout: '{"activity_label": str, "ctx_a": str, "ctx_b": str, "endings": [str x4], "label": "0".."3"}',
    source: 'Rowan/hellaswag, split validation',
    build(doc) {
      const ctx = `${str(doc, 'ctx_a')} ${pyCapitalize(str(doc, 'ctx_b'))}`;
      const query = hellaswagPreprocess(`${str(doc, 'activity_label')}: ${ctx}`);
      const choices = strList(doc.endings, 'endings').map(hellaswagPreprocess);
      return choicesAfter(query, choices, index(doc.label, 'label', choices.length));
    },
  },
  piqa: {
    name: 'piqa',
    accNorm: true,
    layout: '{"goal": str, "sol1": str, "sol2": str, "label": 0|1}',
    source: 'baber/piqa (or ybisk/piqa), split validation',
    build(doc) {
      return choicesAfter(`Question: ${str(doc, 'goal')}\nAnswer:`, [str(doc, 'sol1'), str(doc, 'sol2')], index(doc.label, 'label', 2));
    },
  },
  sciq: {
    name: 'sciq',
    accNorm: true,
    layout: '{"support": str, "question": str, "distractor1": str, "distractor2": str, "distractor3": str, "correct_answer": str}',
    source: 'allenai/sciq, split test',
    build(doc) {
      const choices = [str(doc, 'distractor1'), str(doc, 'distractor2'), str(doc, 'distractor3'), str(doc, 'correct_answer')];
      return choicesAfter(`${pyLstrip(str(doc, 'support'))}\nQuestion: ${str(doc, 'question')}\nAnswer:`, choices, 3);
    },
  },
  winogrande: {
    name: 'winogrande',
    accNorm: false,
    layout: '{"sentence": str with one "_", "option1": str, "option2": str, "answer": "1"|"2"}',
    source: 'allenai/winogrande, subset winogrande_xl, split validation',
    build(doc) {
      const sentence = str(doc, 'sentence');
      const blank = sentence.indexOf('_');
      if (blank < 0) throw new DataError('field "sentence" has no "_" blank');
      const answer = doc.answer;
      if (answer !== '1' && answer !== '2') throw new DataError(`field "answer" must be "1" or "2", got ${describe(answer)}`);
      // Partial scoring: the options fill the blank in the context; the rest of the sentence is
      // the shared continuation.
      const contexts = [str(doc, 'option1'), str(doc, 'option2')].map((o) => sentence.slice(0, blank) + o);
      const continuation = ` ${pyStrip(sentence.slice(blank + 1))}`;
      return { requests: contexts.map((context) => ({ context, continuation })), gold: Number(answer) - 1, choices: contexts };
    },
  },
};
