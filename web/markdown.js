// Replies rendered as Markdown (markdown-it, web/vendor/): paragraphs, emphasis, lists, headings,
// tables, code (blocks get a Copy button), links. A reply is untrusted text, so raw HTML is off
// (any HTML in it is shown as text, never interpreted), images are off (they would load from the
// network) and links open in a new tab with no access to this page; markdown-it's own link check
// refuses javascript:, vbscript:, file: and data: URLs.

import markdownit from './vendor/markdown-it.mjs';

const md = markdownit({ html: false, linkify: true });
md.disable('image');

const renderToken = (tokens, index, options, env, self) => self.renderToken(tokens, index, options);
const linkOpen = md.renderer.rules.link_open ?? renderToken;
md.renderer.rules.link_open = (tokens, index, options, env, self) => {
  tokens[index].attrSet('target', '_blank');
  tokens[index].attrSet('rel', 'noopener noreferrer');
  return linkOpen(tokens, index, options, env, self);
};

// A table column's alignment as a class: the CSP allows no inline style attributes.
for (const rule of ['th_open', 'td_open']) {
  md.renderer.rules[rule] = (tokens, index, options, env, self) => {
    const token = tokens[index];
    const align = /text-align:(left|center|right)/.exec(token.attrGet('style') ?? '')?.[1];
    if (token.attrs) token.attrs = token.attrs.filter(([name]) => name !== 'style');
    if (align) token.attrSet('class', `align-${align}`);
    return renderToken(tokens, index, options, env, self);
  };
}

// A Copy button on each code block, made here (not from the reply's text).
function addCopyButtons(element) {
  for (const block of element.querySelectorAll('pre')) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'small secondary copy-code';
    button.textContent = 'Copy';
    button.setAttribute('aria-label', 'Copy this code');
    button.addEventListener('click', () => navigator.clipboard?.writeText(block.querySelector('code')?.textContent ?? block.textContent));
    block.append(button);
  }
}

// Sets `element`'s content to `text` rendered as Markdown.
export function renderMarkdown(element, text) {
  element.innerHTML = md.render(text).trim();
  addCopyButtons(element);
}

// Renders `text` into `element` at most once a frame: a streaming reply re-renders as it grows.
// `onRendered` runs after each render (the view follows the reply).
const pending = new Map();
export function renderMarkdownSoon(element, text, onRendered) {
  if (!pending.has(element)) {
    requestAnimationFrame(() => {
      renderMarkdown(element, pending.get(element));
      pending.delete(element);
      onRendered?.();
    });
  }
  pending.set(element, text);
}
