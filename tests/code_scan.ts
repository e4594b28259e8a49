/**
 * The string literals of a TypeScript source, for the layout test: each
 * with its line, and whether it is help text (the value of a `help`,
 * `title`, `lines`, `examples`, … key, or inside a flag list) rather than
 * code. A small lexer — comments, strings, template literals with their
 * `${…}` expressions, regular expression literals — enough for `lib/`.
 *
 * @module
 */

/** A string literal (a template literal's text, `${…}` parts as `${}`). */
export interface Literal {
  /** The text between the quotes, escapes as written. */
  text: string;
  /** Its first line (1-based). */
  line: number;
  /** Help text of a declaration, not code. */
  help: boolean;
}

/** Keys whose values are help text, or flag lists (flag names and their help). */
const HELP_KEY =
  /^(help|title|lines|examples|summary|description|usage|value|syntax|flags|outputHelp|sections)$|_FLAGS$|^FLAGS$/;

interface Frame {
  kind: "(" | "[" | "{" | "${" | "`";
  help: boolean;
  /** The property key being given a value at this depth (`key:`). */
  key?: string;
  /** A template literal's text so far. */
  text?: string;
  line?: number;
}

const OPEN: Record<string, Frame["kind"]> = { "(": "(", "[": "[", "{": "{" };
const REGEX_AFTER = /[(,=:[!&|?{};+\-*%<>~^]$|^$|\b(return|typeof|case|in|of|void|delete|throw)$/;

/** Every string literal of `source`. */
export function literals(source: string): Literal[] {
  const out: Literal[] = [];
  const stack: Frame[] = [{ kind: "{", help: false }];
  let i = 0;
  let line = 1;
  let prev = ""; // the last significant token, for regex literals and keys
  let lastWord = ""; // the last identifier or string, a key when ':' follows
  let declName: string | undefined; // `const NAME`
  let assignKey: string | undefined; // NAME after `=`: the key of the bracket that follows
  const top = () => stack[stack.length - 1];
  const helpHere = () => {
    const frame = top();
    return frame.help || (frame.key !== undefined && HELP_KEY.test(frame.key));
  };
  while (i < source.length) {
    const frame = top();
    const c = source[i];
    if (frame.kind === "`") {
      if (c === "\\") {
        frame.text += source.slice(i, i + 2);
        if (source[i + 1] === "\n") line++;
        i += 2;
      } else if (c === "`") {
        stack.pop();
        out.push({ text: frame.text!, line: frame.line!, help: frame.help });
        prev = "`";
        i++;
      } else if (c === "$" && source[i + 1] === "{") {
        frame.text += "${}";
        stack.push({ kind: "${", help: frame.help });
        prev = "{";
        i += 2;
      } else {
        if (c === "\n") line++;
        frame.text += c;
        i++;
      }
      continue;
    }
    if (c === "\n") {
      line++;
      i++;
      continue;
    }
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "/" && source[i + 1] === "/") {
      while (i < source.length && source[i] !== "\n") i++;
      continue;
    }
    if (c === "/" && source[i + 1] === "*") {
      const end = source.indexOf("*/", i + 2);
      for (const ch of source.slice(i, end)) if (ch === "\n") line++;
      i = end + 2;
      continue;
    }
    if (c === "/" && REGEX_AFTER.test(prev)) {
      let inClass = false;
      i++;
      while (i < source.length && (source[i] !== "/" || inClass)) {
        if (source[i] === "\\") i++;
        else if (source[i] === "[") inClass = true;
        else if (source[i] === "]") inClass = false;
        i++;
      }
      i++;
      while (/[a-z]/i.test(source[i] ?? "")) i++;
      prev = "regex";
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < source.length && source[j] !== c) j += source[j] === "\\" ? 2 : 1;
      const text = source.slice(i + 1, j);
      out.push({ text, line, help: helpHere() });
      lastWord = text;
      prev = "string";
      i = j + 1;
      continue;
    }
    if (c === "`") {
      stack.push({ kind: "`", help: helpHere(), text: "", line });
      i++;
      continue;
    }
    if (/[A-Za-z_$]/.test(c)) {
      const word = /^[A-Za-z_$][\w$]*/.exec(source.slice(i))![0];
      if (prev === "const" || prev === "let" || prev === "var") declName = word;
      lastWord = word;
      prev = word;
      i += word.length;
      continue;
    }
    if (/[0-9]/.test(c)) {
      const num = /^[0-9][\w.]*/.exec(source.slice(i))![0];
      prev = "number";
      i += num.length;
      continue;
    }
    // Punctuation.
    if (c in OPEN) {
      const key = assignKey ?? frame.key;
      assignKey = undefined;
      stack.push({
        kind: OPEN[c],
        help: frame.help || (key !== undefined && HELP_KEY.test(key)),
      });
    } else if (c === ")" || c === "]" || c === "}") {
      if (stack.length > 1) stack.pop();
      if (c === "}" && top().kind === "`") {
        i++;
        continue;
      }
    } else if (c === ":" && (prev === "string" || /^[A-Za-z_$]/.test(prev))) {
      frame.key = lastWord;
    } else if (c === "," || c === ";") {
      frame.key = undefined;
      if (c === ";") declName = undefined;
    } else if (c === "=" && source[i + 1] !== "=" && source[i + 1] !== ">" && declName) {
      assignKey = declName;
      declName = undefined;
    }
    if (c !== "=" && !(c in OPEN) && assignKey !== undefined && c !== " ") assignKey = undefined;
    prev = c;
    i++;
  }
  return out;
}
